"""Scores, allocation and removal of head / MLP units (:mod:`prunekit.lm.structured`,
whose docstring has the formulas): one score per unit by criterion, the units removed
per block (``layer``) or over the model (``global``), and zeroing them in place with
FLAP's bias compensation."""

from __future__ import annotations

import torch

from ..pruning.reconstruction import weight_2d
from ..registry import PrunekitError
from .struct_units import ChannelStats, UnitGroup

CRITERIA = ("magnitude", "wanda", "flap")


def _per_unit(g: UnitGroup, per_channel: torch.Tensor) -> torch.Tensor:
    return per_channel.reshape(g.n, g.size).sum(1)


@torch.no_grad()
def unit_scores(g: UnitGroup, criterion: str, stats: ChannelStats | None = None) -> torch.Tensor:
    """One score per unit of ``g`` (module docstring), float64."""
    wo = weight_2d(g.consumer).detach().double()
    if criterion == "magnitude":
        sq = _per_unit(g, (wo * wo).sum(0))
        for layer, off in g.producers:
            w = weight_2d(layer).detach().double()
            rows = w[off : off + g.n * g.size]
            sq = sq + _per_unit(g, (rows * rows).sum(1))
        return sq.sqrt()
    if stats is None or stats.total is None:
        raise PrunekitError(f"criterion {criterion!r} needs calibration data (data=token ids)")
    if criterion == "wanda":
        return _per_unit(g, wo.abs().sum(0) * stats.norm())
    if criterion == "flap":
        return _per_unit(g, stats.variance() * (wo * wo).sum(0))
    raise PrunekitError(f"unknown structured criterion {criterion!r}; known: {', '.join(CRITERIA)}")


def removal_count(n: int, fraction: float) -> int:
    """Units removed of ``n``: ``round(fraction * n)``, keeping at least one."""
    return min(int(round(fraction * n)), n - 1)


def standardised(scores: torch.Tensor) -> torch.Tensor:
    """``(s - mean) / std`` within one group (std 1 when it is 0 or undefined)."""
    std = float(scores.std()) if scores.numel() > 1 else 0.0
    return (scores - scores.mean()) / (std if std > 0 else 1.0)


def allocate(
    groups: list[UnitGroup], scores: dict[str, torch.Tensor], fraction: float, scope: str
) -> dict[str, torch.Tensor]:
    """Units to remove per group (all of one kind). ``layer``: the
    ``removal_count(n, fraction)`` lowest of every group. ``global``: ``round(fraction *
    sum n)`` units over all groups, the lowest of the scores standardised within each
    group (FLAP's adaptive structure search: blocks compete on equal footing whatever
    their scale), each group's best unit kept."""
    if scope == "layer":
        return {g.name: lowest(scores[g.name], removal_count(g.n, fraction)) for g in groups}
    total = sum(g.n for g in groups)
    k = min(int(round(fraction * total)), total - len(groups))
    flat, owner = [], []
    for i, g in enumerate(groups):
        z = standardised(scores[g.name]).clone()
        z[int(torch.argmax(scores[g.name]))] = torch.inf  # one unit always stays
        flat.append(z)
        owner += [(i, u) for u in range(g.n)]
    chosen = torch.sort(torch.cat(flat), stable=True).indices[:k].tolist()
    out: dict[str, list[int]] = {g.name: [] for g in groups}
    for j in chosen:
        i, u = owner[j]
        out[groups[i].name].append(u)
    return {name: torch.tensor(sorted(units), dtype=torch.long) for name, units in out.items()}


def lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` lowest scores (ties: the earlier unit goes first), sorted."""
    order = torch.sort(scores, stable=True).indices[:k]
    return torch.sort(order).values


@torch.no_grad()
def zero_units(g: UnitGroup, units: torch.Tensor, stats: ChannelStats | None = None) -> None:
    """Zero the units' producer rows and biases and output-projection columns in place.
    ``stats`` given: first add ``W_o[:, removed] @ mean(X_removed)`` to the output
    projection's bias (FLAP's compensation; a projection without bias gets none)."""
    if units.numel() == 0:
        return
    cols = g.channels(units)
    wo = weight_2d(g.consumer)
    bias = getattr(g.consumer, "bias", None)
    if stats is not None and isinstance(bias, torch.Tensor):
        shift = wo[:, cols].double() @ stats.mean()[cols]
        bias.add_(shift.to(bias.dtype))
    wo[:, cols] = 0
    for layer, off in g.producers:
        rows = g.channels(units, off)
        weight_2d(layer)[rows] = 0
        b = getattr(layer, "bias", None)
        if isinstance(b, torch.Tensor):
            b[rows] = 0

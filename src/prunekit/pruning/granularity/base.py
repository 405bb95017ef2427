"""What every granularity shares: the ``Granularity`` base object, the registry, and
the helpers that rank groups of scores at an exact count.

Conventions (every granularity follows them): scores are higher = keep; already-pruned
weights score ``-inf`` and stay pruned, so masks only ever lose entries; ties are broken
by position (stable sort), so the count is exact. Scope ``"layer"`` applies the
sparsity to every module separately, ``"global"`` ranks all groups together.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...registry import PrunekitError, Registry
from ..masks import from_out_in, get_mask, n_units, original, out_in
from ..options import Options


class Granularity:
    """A unit of removal: how scores become masks, and what the unit implies.

    Subclasses live one per file in this package and register one instance in
    ``GRANULARITIES``; ``masks`` receives the options as an instance of ``Options``.
    """

    name: ClassVar[str]
    #: Whole output units go (their bias, the BatchNorm after them): the classifier head
    #: is left alone, units of tied layers go together and ``shrink`` can remove them.
    removes_units: ClassVar[bool] = False
    #: How the L1 / L0 objectives shape this unit: ``"weight"`` (one term or gate per
    #: weight), ``"unit"`` (one per output unit), None (they do not apply).
    regularized_as: ClassVar[str | None] = None
    #: ``check_model`` has something to check (building the model up front pays).
    checks_model: ClassVar[bool] = False
    Options: ClassVar[type[Options]] = Options

    def masks(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        options: Any,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def options(self, values: dict[str, Any] | None = None) -> Any:
        """The options dataclass filled from user values (checked, one-line errors)."""
        return self.Options.parse(dict(values or {}), f"granularity {self.name!r}")

    def implied_sparsity(self, options: Any) -> float | None:
        """The sparsity the unit fixes by itself (N:M: ``1 - n/m``), else None."""
        return None

    def check_sparsity(self, sparsity: float, options: Any) -> float:
        """A target this granularity can reach, else a one-line error."""
        return check_sparsity(sparsity)

    def check_model(self, modules: dict[str, nn.Module], options: Any) -> None:
        """Refuse a model whose layers the unit does not fit (N:M: ``m`` divides fan-in)."""

    def fixed_by(self, options: Any) -> str:
        """What fixes the sparsity, for messages (``implied_sparsity`` is not None)."""
        return f"granularity {self.name!r}"

    def __call__(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        **options: Any,
    ) -> dict[str, torch.Tensor]:
        """``masks`` with options given as keywords, and the target checked: the entry
        for callers outside a run (``make_masks``). ``masks`` itself trusts its target,
        checked once at the boundary (``RunConfig``/``resolve``, ``Pruner``, ``prune``)."""
        opts = self.options(options)
        return self.masks(modules, scores, self.check_sparsity(sparsity, opts), scope, opts)


GRANULARITIES: Registry[Granularity] = Registry("granularity")


def check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise PrunekitError(f"sparsity must be in [0, 1), got {sparsity}")
    return s


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean tensor marking the k lowest entries of a 1-D tensor (stable ties)."""
    drop = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(scores.flatten(), stable=True).indices
        drop[order[:k]] = True
    return drop.view(scores.shape)


def _select(
    groups: dict[str, torch.Tensor], sparsity: float, scope: str, *, keep_one: bool
) -> dict[str, torch.Tensor]:
    """``groups`` maps module -> 1-D group scores; returns module -> bool 'drop' per group."""
    if scope not in ("global", "layer"):
        raise PrunekitError(f"scope must be 'global' or 'layer', got {scope!r}")
    if scope == "layer":
        out = {}
        for name, g in groups.items():
            k = round(sparsity * g.numel())
            if keep_one and k >= g.numel():
                raise PrunekitError(
                    f"sparsity {sparsity} would prune every unit of layer {name!r} "
                    f"({g.numel()} units); at least one must stay"
                )
            out[name] = _lowest(g, k)
        return out
    names = list(groups)
    flat = []
    for name in names:
        g = groups[name].clone()
        if keep_one:  # the best unit of each layer survives any global threshold
            g[int(torch.argmax(torch.where(torch.isinf(g), -1e38, g)))] = float("inf")
        flat.append(g)
    allg = torch.cat(flat)
    drop = _lowest(allg, round(sparsity * allg.numel()))
    return dict(zip(names, torch.split(drop, [g.numel() for g in flat]), strict=True))


def _prepare(module: nn.Module, score: torch.Tensor) -> torch.Tensor:
    """Scores as float on CPU, with already-pruned weights at -inf."""
    score = score.detach().float().cpu()
    mask = get_mask(module)
    if mask is not None and score.shape == mask.shape:
        score = torch.where(mask.cpu() == 0, torch.tensor(float("-inf")), score)
    return score


def per_weight(module: nn.Module, score: torch.Tensor) -> torch.Tensor:
    """A 1-D per-unit score broadcast over the unit's weights; other scores unchanged."""
    w = original(module)
    if score.dim() == 1 and w.dim() > 1 and score.numel() == n_units(module):
        w = out_in(module, w)
        return from_out_in(module, score.view(-1, *([1] * (w.dim() - 1))).expand_as(w))
    return score


def unit_scores(module: nn.Module, score: torch.Tensor) -> torch.Tensor:
    """Reduce a weight-shaped score to one per output unit (mean over the unit)."""
    score = _prepare(module, score)
    if score.dim() == 1:
        mask = get_mask(module)
        if mask is not None:  # units whose weights are all pruned stay pruned
            dead = out_in(module, mask).flatten(1).sum(1).cpu() == 0
            score = torch.where(dead, torch.tensor(float("-inf")), score)
        return score
    score = out_in(module, score)
    finite = torch.where(torch.isinf(score), torch.zeros_like(score), score)
    per_unit = finite.flatten(1).mean(1)
    dead = torch.isinf(score).flatten(1).all(1)
    return torch.where(dead, torch.tensor(float("-inf")), per_unit)

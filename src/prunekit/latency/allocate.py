"""Which widths to keep under a latency budget: greedy importance-per-millisecond.

Given per-unit importance scores ``s_{g,i} >= 0`` of every prunable group ``g`` (any
registered criterion, reduced to units and averaged over tied layers as the neuron
granularity does) and the latency predictor ``T(w)`` (:mod:`.table`), choose grid
widths ``w_g`` (each group keeps its ``w_g`` best units) to

    maximize  J(w) = sum_g log( K_g(w_g) / K_g(n_g) )   subject to  T(w) <= T_target

(in general ``sum_g m_g * log(...)``, :func:`group_weights`: ``m_g = 1``,
``weighting="group"``; ``m_g`` = the number of layers producing the group's units,
``weighting="layers"``; or, the default, ``m_g`` = the number of Conv/Linear layers
whose width the group sets, producers *and* consumers, ``weighting="touched"``),
where ``K_g(w)`` is the sum of the ``w`` largest scores of group ``g``: the log of the
*fraction of each group's importance that is kept*, summed. Normalizing per group makes
criteria with different scales per layer comparable, and the log makes emptying any
one group ruinously expensive (a product of kept fractions).

The search is the greedy ratio rule of NetAdapt (Yang et al. 2018) and of HALP's
knapsack relaxation (Shen et al. 2022): from the dense widths, repeatedly take the
single move -- one group to a lower grid width -- with the smallest importance lost per
millisecond saved, ``(J(w) - J(w')) / (T(w) - T(w'))``, until ``T(w) <= T_target``.
Every lower grid width of a group is a candidate move (not only the next one), so a
width that measures slower than a narrower one is skipped over: widths end on the
measured fast shapes. A last *fill* pass gives back what the greedy removal overshot:
while some group can grow to a higher grid width with ``T(w') <= T_target``, the move
with the largest importance regained per millisecond added (any move that adds none
first) is taken, so the allocation ends just under the budget.

:func:`plan` adds depth for residual networks: ``depth="only"`` removes blocks, lowest
``I_b / dT_b`` (block importance lost per predicted unit saved) first, until the
budget; ``depth="with"`` removes blocks until ``sqrt(K)`` (half the speed-up in log
scale), then the greedy width allocation takes the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..pruning.dependency import UnitGroup
from ..pruning.masks import clone
from ..registry import PrunekitError
from .depth import without_blocks
from .table import LatencyModel

WEIGHTINGS = ("group", "layers", "touched")


def group_weights(groups: Sequence[UnitGroup], weighting: str) -> list[float]:
    """``m_g`` of the objective (module docstring).

    Why ``touched``: with scores roughly flat within a group, ``log K_g(w)/K_g(n)`` is
    about ``log(w / n)``, and with latency roughly a sum of ``c_in * c_out`` terms, a
    group's share of the latency is proportional to the number of layers whose width
    it sets. Weighting each group by that count makes the optimum of the relaxed
    problem (``m_g / w_g = lambda * dT/dw_g``) the *uniform* kept fraction when the
    latency is proportional to MACs and scores are flat; the allocation then departs
    from uniform only where the measured latency or the importances say so. With
    ``m_g = 1`` a residual stream tied across 4 producers and 5 consumers saves the
    latency of 9 layers for the price of one group, and the greedy cut ResNet-20's
    stage-1 stream to 4 of 16 channels (benchmarks/results/latency_followup.md).
    In a plain chain every group sets 2 layers, so ``touched`` equals ``group``."""
    if weighting not in WEIGHTINGS:
        raise PrunekitError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    if weighting == "group":
        return [1.0] * len(groups)
    if weighting == "layers":
        return [float(len(g.producers)) for g in groups]
    return [float(len(g.producers) + len(g.consumers)) for g in groups]


@dataclass
class Allocation:
    widths: list[int]
    predicted: float  # reference units (see table.py)
    kept_importance: float  # J(w)
    steps: int


def kept(scores: torch.Tensor, w: int) -> float:
    """Sum of the ``w`` largest scores (negative scores count as 0)."""
    s = scores.clamp(min=0).sort(descending=True).values
    return float(s[:w].sum())


def log_kept(scores: torch.Tensor, w: int) -> float:
    total = kept(scores, len(scores))
    if total <= 0:  # an all-zero group: every unit is equally (un)important
        return math.log(w / len(scores))
    k = kept(scores, w)
    return math.log(k / total) if k > 0 else -1e9


def allocate(
    lm: LatencyModel,
    scores: Sequence[torch.Tensor],
    target: float,
    *,
    start: Sequence[int] | None = None,
    removed: Sequence[str] = (),
    weights: Sequence[float] | None = None,
) -> Allocation:
    """Greedy allocation (module docstring); ``target`` in the predictor's units.

    Raises :class:`PrunekitError` when even the narrowest widths predict above
    ``target`` (naming the best reachable speed-up)."""
    if len(scores) != len(lm.groups):
        raise PrunekitError(f"need scores for {len(lm.groups)} groups, got {len(scores)}")
    weights = list(weights) if weights is not None else [1.0] * len(scores)
    widths = list(start or lm.full)
    t = lm.predict(widths, removed)
    steps = 0
    while t > target:
        best = None
        for g, grid in enumerate(lm.grids):
            for w in grid:
                if w >= widths[g]:
                    break
                trial = widths.copy()
                trial[g] = w
                saved = t - lm.predict(trial, removed)
                if saved <= 0:
                    continue
                lost = weights[g] * (log_kept(scores[g], widths[g]) - log_kept(scores[g], w))
                ratio = lost / saved
                if best is None or ratio < best[0]:
                    best = (ratio, g, w)
        if best is None:
            break
        _, g, w = best
        widths[g] = w
        t = lm.predict(widths, removed)
        steps += 1
    if t > target:
        raise PrunekitError("unreachable")  # callers check reachability first
    widths, t = fill(lm, scores, widths, target, removed, weights)
    j = sum(m * log_kept(s, w) for m, s, w in zip(weights, scores, widths, strict=True))
    return Allocation(widths, t, j, steps)


def fill(
    lm: LatencyModel,
    scores: Sequence[torch.Tensor],
    widths: list[int],
    target: float,
    removed: Sequence[str] = (),
    weights: Sequence[float] | None = None,
) -> tuple[list[int], float]:
    """Grow widths while the prediction stays within ``target`` (module docstring)."""
    weights = list(weights) if weights is not None else [1.0] * len(scores)
    widths = list(widths)
    t = lm.predict(widths, removed)
    while True:
        best = None
        for g, grid in enumerate(lm.grids):
            for w in grid:
                if w <= widths[g]:
                    continue
                trial = widths.copy()
                trial[g] = w
                t_new = lm.predict(trial, removed)
                if t_new > target:
                    continue
                gain = weights[g] * (log_kept(scores[g], w) - log_kept(scores[g], widths[g]))
                added = t_new - t
                rate = math.inf if added <= 0 else gain / added
                if gain > 0 and (best is None or (rate, gain) > best[0]):
                    best = ((rate, gain), g, w, t_new)
        if best is None:
            return widths, t
        _, g, w, t = best
        widths[g] = w


def uniform(lm: LatencyModel, target: float) -> list[int]:
    """The same fraction kept in every group (the largest fraction meeting ``target``),
    each group's width snapped down to its grid: the uniform baseline."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if lm.predict(_snap(lm, mid)) <= target:
            lo = mid
        else:
            hi = mid
    return _snap(lm, lo)


def _snap(lm: LatencyModel, fraction: float) -> list[int]:
    out = []
    for grid, n in zip(lm.grids, lm.full, strict=True):
        below = [w for w in grid if w <= fraction * n]
        out.append(below[-1] if below else grid[0])
    return out


def _depth_order(lm: LatencyModel, importance: dict[str, float]) -> list[str]:
    """Blocks by importance lost per predicted unit saved (ascending)."""
    base = lm.predict(lm.full)

    def ratio(b: str) -> float:
        saved = base - lm.predict(lm.full, [b])
        return max(importance[b], 0.0) / saved if saved > 0 else math.inf

    return sorted(importance, key=ratio)


def plan(
    lm: LatencyModel,
    scores: list,
    budget: float,
    depth: str,
    importance: dict[str, float],
    weighting: str = "touched",
) -> tuple[list[int], list[str]]:
    """Widths and removed blocks for a budget in predictor units (module docstring)."""
    removed: list[str] = []
    if depth != "none":
        dense = lm.predict(lm.full)
        depth_budget = budget if depth == "only" else dense / math.sqrt(dense / budget)
        for b in _depth_order(lm, importance):
            if lm.predict(lm.full, removed) <= depth_budget:
                break
            removed.append(b)
        if depth == "only":
            return list(lm.full), removed
    if lm.predict(lm.full, removed) <= budget:
        return list(lm.full), removed
    if lm.predict(lm.minimum(), removed) > budget:
        return lm.minimum(), removed
    weights = group_weights(lm.groups, weighting)
    return allocate(lm, scores, budget, removed=removed, weights=weights).widths, removed


def build(model: nn.Module, lm: LatencyModel, widths, removed, scores) -> nn.Module:
    small = without_blocks(model, removed) if removed else clone(model)
    return lm.with_widths(small, widths, scores)


def best_reachable(lm: LatencyModel, depth: str, blocks: list[str]) -> float:
    if depth == "only":
        return lm.predict(lm.full, blocks)
    return lm.predict(lm.minimum(), blocks if depth == "with" else [])

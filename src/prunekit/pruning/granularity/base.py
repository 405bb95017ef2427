"""Granularities: turn importance scores into masks, at an exact target sparsity.

A *criterion* gives each prunable module a score tensor (higher = more important),
either weight-shaped or, for unit criteria, one score per output unit. A
*granularity* groups those scores into units of removal and zeroes the lowest
``round(sparsity * n_groups)`` groups:

=========  ======================================  ===============================
name       unit of removal                         group score
=========  ======================================  ===============================
weight     one weight                              the score itself
neuron     an output unit (Linear row, conv        mean score over the unit's
           filter; its bias entry goes with it;    weights (= L1 norm / fan-in),
           ``prune_step`` adds the BatchNorm after  averaged over tied layers
           it and ties residual partners)
kernel     a kh x kw kernel W[o, i] (Linear: one   mean score over the kernel
           weight); see ``connection.py``
nm         the m-n lowest of every m consecutive   the score itself; sparsity is
           inputs (N:M); see ``connection.py``     fixed at 1 - n/m
=========  ======================================  ===============================

The mean (not the sum) makes units of layers with different fan-in comparable
under ``scope="global"``; within a layer both rank identically.

Scope ``"layer"`` applies the sparsity to every module separately; ``"global"``
ranks all groups of all modules together. Sparsity is always the fraction of
*units of removal* (weights, kernels, neurons); already-pruned groups count
towards it and always stay pruned (their score is forced to -inf), so masks
only ever lose entries. Ties are broken by position (stable sort), so the count
is exact.

Masks are returned as ``{"<module>.weight": mask, "<module>.bias": mask}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ...registry import PrunekitError, Registry
from ..masks import from_out_in, get_mask, n_units, original, out_in

GranularityFn = Callable[..., dict[str, torch.Tensor]]
GRANULARITIES: Registry[GranularityFn] = Registry("granularity")


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


@GRANULARITIES.register("weight")
def weight_masks(
    modules: dict[str, nn.Module], scores: dict[str, torch.Tensor], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """Unstructured: each weight is its own group. A unit criterion's score (one per
    output unit, e.g. entropy) scores each weight through its unit: ``score(w_ij) = s_i``."""
    s = check_sparsity(sparsity)
    prepared = {n: _prepare(modules[n], per_weight(modules[n], scores[n])) for n in modules}
    for n, sc in prepared.items():
        if sc.shape != original(modules[n]).shape:
            raise PrunekitError(
                f"criterion gave layer {n!r} scores of shape {tuple(sc.shape)}; "
                "weight granularity needs one score per weight"
            )
    drop = _select({n: sc.flatten() for n, sc in prepared.items()}, s, scope, keep_one=False)
    return {f"{n}.weight": (~drop[n]).view(prepared[n].shape).float() for n in modules}


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


@GRANULARITIES.register("neuron")
def neuron_masks(
    modules: dict[str, nn.Module],
    scores: dict[str, torch.Tensor],
    sparsity: float,
    scope: str,
    *,
    round_to: int = 1,
    ties: Sequence[Sequence[str]] | None = None,
) -> dict[str, torch.Tensor]:
    """Structured: whole output units (rows of a Linear, filters of a conv).

    ``ties``: groups of layers whose units go together (``prune_step`` passes the
    surgery's dependency groups, e.g. the convs of a residual stage); a tied unit
    scores the mean of its layers' unit scores, ``-inf`` only if dead in all of them.
    Each group is one "layer" for ``scope="layer"``. Default: every layer alone.
    ``round_to=k``: each group keeps a multiple of ``k`` units (capped at its size)
    by keeping its best-scored extra units, so the pruned fraction can be lower.
    """
    s = check_sparsity(sparsity)
    if int(round_to) < 1:
        raise PrunekitError(f"round_to must be a whole number >= 1, got {round_to}")
    ties = [list(t) for t in ties] if ties is not None else [[n] for n in modules]
    groups = {}
    for tie in ties:
        per_layer = torch.stack([unit_scores(modules[n], scores[n]) for n in tie])
        finite = torch.where(torch.isinf(per_layer), torch.nan, per_layer).nanmean(0)
        groups[", ".join(tie)] = torch.where(torch.isinf(per_layer).all(0), -torch.inf, finite)
    drop = _select(groups, s, scope, keep_one=True)
    masks = {}
    for tie, (key, d) in zip(ties, drop.items(), strict=True):
        keep = (~_round_kept(d, groups[key], int(round_to))).float()
        for n in tie:
            m, w = modules[n], out_in(modules[n], original(modules[n]))
            unit = keep.view(-1, *([1] * (w.dim() - 1))).expand_as(w)
            masks[f"{n}.weight"] = from_out_in(m, unit).contiguous()
            if hasattr(m, "bias_orig") or getattr(m, "bias", None) is not None:
                masks[f"{n}.bias"] = keep.clone()
    return masks


# Routable user options (``-o round_to=8``); ``ties`` comes from prune_step, not users.
neuron_masks.options = ("round_to",)  # type: ignore[attr-defined]


def _round_kept(drop: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    """Un-drop the best-scored dropped units until the kept count is a multiple of
    ``k`` (or the group is whole); already-pruned (``-inf``) units stay dropped."""
    kept = int((~drop).sum())
    extra = min(-kept % k, drop.numel() - kept)
    candidates = torch.where(drop & ~torch.isinf(score), score, -torch.inf)
    order = torch.sort(candidates, descending=True, stable=True).indices[:extra]
    drop = drop.clone()
    drop[order[~torch.isinf(candidates[order])]] = False
    return drop


def make_masks(
    granularity: str,
    modules: dict[str, nn.Module],
    scores: dict[str, torch.Tensor],
    sparsity: float,
    scope: str = "global",
    **kwargs: object,
) -> dict[str, torch.Tensor]:
    missing = [n for n in modules if n not in scores]
    if missing:
        raise PrunekitError(f"criterion gave no scores for layers {missing}")
    return GRANULARITIES.get(granularity)(modules, scores, sparsity, scope, **kwargs)

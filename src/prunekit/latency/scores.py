"""Per-unit importance scores of every prunable group for the latency allocation
(:func:`group_scores`; ``Target(scoring=...)``)."""

from __future__ import annotations

import torch
from torch import nn

from ..pruning.criteria import CRITERIA, Context
from ..pruning.granularity import unit_scores
from ..pruning.masks import original, out_in
from ..registry import PrunekitError
from ..surgery.fold import fold_batchnorm
from .table import LatencyModel

SCORINGS = ("producers", "deployed", "tplike")


def group_scores(
    model: nn.Module,
    lm: LatencyModel,
    criterion: str,
    ctx: Context,
    scoring: str = "tplike",
) -> list:
    """One score per unit of every table group.

    ``scoring="producers"``: the criterion's unit scores (mean over a unit's output
    weights), averaged over the group's tied producers -- what the neuron granularity
    does.

    ``scoring="deployed"``: the units are scored on the model *as deployed*,
    BatchNorm folded into the layer before it (``W' = gamma / sqrt(var + eps) * W``,
    :mod:`prunekit.surgery.fold`), and over *every* layer whose width the group sets:
    the producers' output weights of unit ``c`` and the consumers' input weights of
    ``c`` (a Linear after a flatten: its ``fan`` columns of ``c``). Each layer's
    per-unit score (mean over the unit's weights) is divided by its mean over the
    layer's units, so layers of different scales weigh alike, and the group's score is
    the mean over its layers:

        s_c = (1 / |L_g|) * sum_{l in L_g} s_{l,c} / mean_c'(s_{l,c'})

    Why: a filter followed by BatchNorm has no scale of its own (BN renormalizes it),
    so its raw norm says little about what the unit contributes; and a unit whose
    outgoing weights are small contributes little whatever its filter. Torch-Pruning's
    group importance (Fang et al. 2023, DepGraph) likewise reduces over every coupled
    layer. On ResNet-20 / Fashion-MNIST (one seed) the same uniform 8/16/32 widths
    kept by these scores fine-tuned to 0.7815 against 0.7665 with the producer scores
    (benchmarks/results/latency_alloc_ablation.md; one fine-tune each, so not beyond
    run-to-run noise on its own). The per-layer normalization is a per-group scale, so
    the allocation's kept-fraction objective is unchanged for a group of one producer
    and no consumer weights (e.g. with a criterion that only scores output units).

    ``scoring="tplike"`` (default): the same reduction over the group's layers on the *raw*
    (unfolded) model, with each BatchNorm that follows a producer as one more layer,
    scored by ``|gamma_c|``:

        s_c = (1 / |L_g|) * sum_{l in L_g} s_{l,c} / mean_c'(s_{l,c'}),
        L_g = producers (filter of c) + BatchNorms (|gamma_c|) + consumers (inputs of c)

    With the ``magnitude`` criterion ``s_{l,c}`` is the L1 norm of the unit's weights in
    layer ``l`` (over its count, which the normalization cancels). This reads the same
    layers as Torch-Pruning's group magnitude importance (Fang et al. 2023, DepGraph:
    filters, BN scales and consumers' input channels, raw weights); unlike it, each
    layer is divided by its own mean *before* the mean over layers (Torch-Pruning
    averages the raw L1 norms, then normalizes), so a wide consumer does not outweigh
    the filter and the BN scale. ``deployed`` reads the filter and the BN scale as one
    number, ``gamma / sqrt(var + eps) * W``; ``tplike`` reads them as two layers and
    does not divide by the BN's running standard deviation (the ``|gamma|`` layer is
    read with the ``magnitude`` criterion only). On a model without
    BatchNorm the two are the same. Why the default: on ResNet-20 / Fashion-MNIST the
    allocation with these scores fine-tuned above both ``deployed`` and Torch-Pruning's
    uniform pruning at the same measured speed-up, at 2x and 3x, beyond the spread of
    the repeated fine-tunes (benchmarks/results/latency_resnet_tplike.md has the
    figures, seeds and intervals)."""
    if scoring not in SCORINGS:
        raise PrunekitError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    if scoring == "tplike":
        # BN |gamma| is a magnitude: mixed into other criteria's scores it would steer
        # them (``random`` would keep high-gamma channels), so only magnitude reads it.
        return _layer_mean_scores(model, lm, criterion, ctx, batchnorm=criterion == "magnitude")
    if scoring == "producers":
        modules = {p: model.get_submodule(p) for g in lm.groups for p in g.producers}
        raw = CRITERIA.get(criterion)(model, modules, ctx)
        out = []
        for g in lm.groups:
            per = [unit_scores(modules[p], raw[p]) for p in g.producers]
            s = torch.stack(per).mean(0)
            out.append(torch.where(torch.isfinite(s), s, torch.zeros_like(s)))
        return out
    scored, _ = fold_batchnorm(model)
    return _layer_mean_scores(scored, lm, criterion, ctx, batchnorm=False)


def _layer_mean_scores(
    model: nn.Module, lm: LatencyModel, criterion: str, ctx: Context, *, batchnorm: bool
) -> list:
    """Per unit, the mean over the group's layers of each layer's per-unit score divided
    by its mean (``group_scores``: ``deployed`` on the folded model, ``tplike`` on the
    raw one with the followers' BatchNorm ``|gamma|``)."""
    names = {p for g in lm.groups for p in g.producers}
    names |= {c for g in lm.groups for c, _ in g.consumers}
    modules = {n: model.get_submodule(n) for n in sorted(names)}
    raw = CRITERIA.get(criterion)(model, modules, ctx)
    out = []
    for g in lm.groups:
        per = [_normalized(unit_scores(modules[p], raw[p])) for p in g.producers]
        if batchnorm:
            for f in g.followers:
                bn = model.get_submodule(f)
                if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.weight is not None:
                    per.append(_normalized(bn.weight.detach().float().abs().cpu()))
        for c, fan in g.consumers:
            s_in = _input_unit_scores(modules[c], raw[c], g.size, fan)
            if s_in is not None:
                per.append(_normalized(s_in))
        out.append(torch.stack(per).mean(0))
    return out


def _normalized(s: torch.Tensor) -> torch.Tensor:
    s = torch.where(torch.isfinite(s), s, torch.zeros_like(s)).clamp(min=0)
    mean = s.mean()
    return s / mean if mean > 0 else s


def _input_unit_scores(
    module: nn.Module, score: torch.Tensor, size: int, fan: int
) -> torch.Tensor | None:
    """Mean score of the input weights of each of ``size`` units consumed by ``module``
    (``fan`` inputs per unit, unit-major as a flatten lays them out); ``None`` when the
    criterion gave no weight-shaped score."""
    w = original(module)
    if score.shape != w.shape:
        return None
    s = out_in(module, score.detach().float().cpu())
    if s.shape[1] != size * fan:
        return None
    s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
    s = s.transpose(0, 1).reshape(size, fan, s.shape[0], -1)
    return s.mean(dim=(1, 2, 3))

"""Structured pruning of transformers: whole attention heads and MLP hidden units.

A *unit* is one attention head (its ``d`` query, key and value output channels with
their biases, and the ``d`` input columns of the attention's output projection) or one
MLP hidden unit (a row of the up projection with its bias, a column of the down
projection). Known blocks: GPT-2 (``GPT2Attention`` ``c_attn``/``c_proj`` and
``GPT2MLP`` ``c_fc``/``c_proj``, transformers ``Conv1D``: weight ``(in, out)``) and
BERT / RoBERTa (``*Attention`` ``self.{query,key,value}``/``output.dense`` and
``*Layer`` ``intermediate.dense``/``output.dense``, ``nn.Linear``). Every weight is
read as ``W`` ``(out, in)``; ``X`` are the inputs of the *output* (down) projection over
calibration tokens (rows ``n``), i.e. the concatenated head outputs or the MLP
activations, and ``c`` runs over the channels of one unit.

===============  ==========================================================================
criterion        score of a unit (higher = kept)
===============  ==========================================================================
magnitude        ``sqrt( sum_p ||W_p[c, :]||_F^2 + ||W_o[:, c]||_F^2 )`` over its producer
                 rows (q, k, v or up projection) and output-projection columns. No data.
wanda            Wanda-sp, the structured Wanda of An et al. (2024):
                 ``sum_c sum_i |W_o[i, c]| * ||X_c||_2`` (Sun et al. 2023's ``|W| ||X||``
                 summed over the unit's output-projection weights)
flap             FLAP, An et al. (2024), "Fluctuation-based Adaptive Structured Pruning
                 for Large Language Models" (AAAI, arXiv:2312.11983), fluctuation metric
                 ``sum_c Var_n(X_c) * ||W_o[:, c]||_2^2`` with the sample variance
                 ``1/(N-1) sum_n (X_nc - mean_c)^2``; after removal the output projection's
                 bias absorbs the mean of what was removed (``compensate``):
                 ``b <- b + W_o[:, removed] @ mean(X_removed)``
===============  ==========================================================================

Allocation (``scope``): ``"layer"`` (default) removes in every block the same number of
heads, ``round(heads * n_heads)``, and of MLP units, ``round(neurons * n_inner)``, the
lowest-scored ones; ``"global"`` removes ``round(heads * all heads)`` (and likewise MLP
units) over the whole model, ranking scores standardised within each block, so blocks
may keep different counts (FLAP's adaptive structure). At least one head and one MLP
unit stay in every block. A Hugging Face GPT-2 config cannot describe either result
(one ``n_head`` tied to the width); the saved shrunk GPT-2 records per-block counts,
see ``hf_shrunk.py``. Statistics for ``wanda``/``flap`` come from one forward pass of the
*dense* model over the calibration tokens (per-channel sums only: memory is
``O(channels)``, not activations).

Pruning zeroes the units in place (the model keeps its shapes: "masked"); then
:func:`prunekit.shrink` removes them physically (its ``hf-mlp`` backend: dead heads and
dead MLP units), checking that the small model's outputs equal the masked one's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..pruning.reconstruction import weight_2d
from ..registry import PrunekitError
from .struct_scores import (  # noqa: F401  (re-exported)
    CRITERIA,
    allocate,
    lowest,
    removal_count,
    standardised,
    unit_scores,
    zero_units,
)
from .struct_units import ChannelStats, UnitGroup, collect_stats, find_groups, model_inputs  # noqa: F401

SCOPES = ("layer", "global")
#: LM comparison method name -> criterion (granularity "head": heads and MLP units).
STRUCT_METHODS = {"magnitude-struct": "magnitude", "wanda-struct": "wanda", "flap": "flap"}


@dataclass
class StructReport:
    """What :func:`prune_structured` removed: per group, the removed unit indices."""

    criterion: str
    heads: float
    neurons: float
    removed: dict[str, list[int]] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    def per_layer(self, kind: str) -> list[int]:
        """Units left per group of ``kind`` ("head" / "mlp"), in model order."""
        return [self.units[n] - len(self.removed[n]) for n in self.removed if self.kinds[n] == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "heads_fraction": self.heads,
            "neurons_fraction": self.neurons,
            "heads_per_layer": self.per_layer("head"),
            "mlp_per_layer": self.per_layer("mlp"),
            "removed": self.removed,
        }


def check_fraction(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PrunekitError(f"{name} must be a fraction in [0, 1), got {value!r}") from None
    if not 0.0 <= v < 1.0:
        raise PrunekitError(f"{name} must be a fraction in [0, 1), got {value!r}")
    return v


@torch.no_grad()
def prune_structured(
    model: nn.Module,
    *,
    heads: float = 0.0,
    neurons: float = 0.0,
    criterion: str = "magnitude",
    data: torch.Tensor | None = None,
    compensate: bool | None = None,
    scope: str = "layer",
    batch_size: int = 8,
) -> StructReport:
    """Zero the lowest-scored ``heads`` fraction of attention heads and ``neurons``
    fraction of MLP units in every block of ``model``, in place (module docstring).
    ``data``: token ids ``(n, L)`` for ``wanda``/``flap``; ``compensate`` (default: on
    for ``flap`` only) adds the removed channels' mean contribution to the output bias.
    ``scope``: ``"layer"`` (the same count in every block) or ``"global"`` (see
    :func:`allocate`)."""
    heads, neurons = check_fraction("heads", heads), check_fraction("neurons", neurons)
    if scope not in SCOPES:
        raise PrunekitError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if criterion not in CRITERIA:
        raise PrunekitError(
            f"unknown structured criterion {criterion!r}; known: {', '.join(CRITERIA)}"
        )
    groups = find_groups(model)
    needs_data = criterion != "magnitude" or bool(compensate)
    if needs_data and data is None:
        raise PrunekitError(
            f"criterion {criterion!r} needs calibration data: data=token ids (n, L)"
        )
    if data is not None and (not isinstance(data, torch.Tensor) or data.dim() != 2):
        raise PrunekitError("data must be a 2-D tensor of token ids (n, L)")
    stats = collect_stats(model, groups, data, batch_size) if needs_data else {}
    compensate = criterion == "flap" if compensate is None else compensate
    report = StructReport(criterion, heads, neurons)
    scores = {g.name: unit_scores(g, criterion, stats.get(g.name)) for g in groups}
    removed: dict[str, torch.Tensor] = {}
    for kind, fraction in (("head", heads), ("mlp", neurons)):
        of_kind = [g for g in groups if g.kind == kind]
        removed.update(allocate(of_kind, scores, fraction, scope) if of_kind else {})
    for g in groups:
        zero_units(g, removed[g.name], stats.get(g.name) if compensate else None)
        report.removed[g.name] = removed[g.name].tolist()
        report.units[g.name] = g.n
        report.kinds[g.name] = g.kind
    return report


def prune_heads(
    model: nn.Module,
    *,
    heads: float = 0.25,
    neurons: float = 0.25,
    criterion: str = "magnitude",
    data: torch.Tensor | None = None,
    compensate: bool | None = None,
    scope: str = "layer",
    shrink: bool = True,
    example_inputs: Any = None,
    atol: float = 1e-5,
) -> nn.Module:
    """Head / MLP-unit structured pruning of a ``transformers`` GPT-2, BERT or RoBERTa
    model (the ``head`` granularity). Zeroes the chosen units of ``model`` in place
    (:func:`prune_structured`); with ``shrink`` returns a physically smaller copy from
    :func:`prunekit.shrink` (outputs checked equal to the zeroed model's within
    ``atol``), else ``model`` itself. ``example_inputs`` for that check: default the
    first two rows of ``data``, else 2 x 8 token ids. The returned model's
    ``prunekit_structured`` attribute holds the report (units left per layer)."""
    from ..autoshrink import shrink as do_shrink

    report = prune_structured(
        model,
        heads=heads,
        neurons=neurons,
        criterion=criterion,
        data=data,
        compensate=compensate,
        scope=scope,
    )
    out = model
    if shrink:
        if example_inputs is None:
            ids = data[:2] if data is not None else _probe_ids(model)
            example_inputs = model_inputs(model, ids)
        out = do_shrink(model, example_inputs, atol=atol)
    out.prunekit_structured = report.to_dict()  # type: ignore[assignment]
    return out


def _probe_ids(model: nn.Module) -> torch.Tensor:
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 2) or 2)
    return torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0))


def pretrained_form(model: nn.Module) -> nn.Module:
    """A head-pruned (shrunk) ``GPT2LMHeadModel`` as ``PrunedGPT2LMHeadModel`` with the
    same weights, whose config records each block's heads and MLP width, so that
    ``save_pretrained`` / ``from_pretrained`` round-trip it (see ``hf_shrunk.py``)."""
    from .hf_shrunk import PrunedGPT2Config, PrunedGPT2LMHeadModel, register

    if type(model).__name__ not in ("GPT2LMHeadModel", "PrunedGPT2LMHeadModel"):
        raise PrunekitError(
            f"saving a head-pruned {type(model).__name__} is not supported (GPT-2 LMs only)"
        )
    register()
    blocks = model.transformer.h
    fields = {
        k: v
        for k, v in model.config.to_dict().items()
        if k not in ("model_type", "architectures", "auto_map", "layer_heads", "layer_inner")
    }
    config = PrunedGPT2Config(
        layer_heads=[int(b.attn.num_heads) for b in blocks],
        layer_inner=[int(weight_2d(b.mlp.c_fc).shape[0]) for b in blocks],
        **fields,
    )
    new = PrunedGPT2LMHeadModel(config)
    new.load_state_dict(model.state_dict())
    return new.eval()

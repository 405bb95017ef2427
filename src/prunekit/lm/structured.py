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

from ..autoshrink import HEAD_RULES, MLP_PAIRS
from ..pruning.reconstruction import weight_2d
from ..registry import PrunekitError

CRITERIA = ("magnitude", "wanda", "flap")
SCOPES = ("layer", "global")
#: LM comparison method name -> criterion (granularity "head": heads and MLP units).
STRUCT_METHODS = {"magnitude-struct": "magnitude", "wanda-struct": "wanda", "flap": "flap"}


@dataclass
class UnitGroup:
    """The removable units of one attention module or one MLP: ``n`` units of ``size``
    channels; unit ``u``'s channels are ``u * size .. (u + 1) * size - 1`` in the output
    projection's inputs and, shifted by each producer's row offset, in the producers'
    outputs."""

    name: str
    kind: str  # "head" or "mlp"
    producers: list[tuple[nn.Module, int]]
    consumer: nn.Module
    n: int
    size: int

    def channels(self, units: torch.Tensor, offset: int = 0) -> torch.Tensor:
        units = units.to(torch.long)
        return (units[:, None] * self.size + torch.arange(self.size) + offset).flatten()


def _attention_group(name: str, m: nn.Module) -> UnitGroup | None:
    kind = type(m).__name__
    if kind == "GPT2Attention":
        if getattr(m, "is_cross_attention", False):
            return None
        e = m.split_size
        prods = [(m.c_attn, 0), (m.c_attn, e), (m.c_attn, 2 * e)]
        return UnitGroup(name, "head", prods, m.c_proj, m.num_heads, m.head_dim)
    s = m.self
    prods = [(s.query, 0), (s.key, 0), (s.value, 0)]
    n, d = s.num_attention_heads, s.attention_head_size
    return UnitGroup(name, "head", prods, m.output.dense, n, d)


def find_groups(model: nn.Module) -> list[UnitGroup]:
    """Every attention module and MLP of the known block types, in model order."""
    groups = []
    for name, m in model.named_modules():
        kind = type(m).__name__
        if kind in HEAD_RULES:
            g = _attention_group(name, m)
            if g is not None:
                groups.append(g)
        elif kind in MLP_PAIRS:
            up, down = (m.get_submodule(p) for p in MLP_PAIRS[kind])
            n = weight_2d(up).shape[0]
            groups.append(UnitGroup(name, "mlp", [(up, 0)], down, n, 1))
    if not groups:
        raise PrunekitError(
            f"{type(model).__name__} has no attention or MLP block prunekit recognises "
            f"(known: {', '.join(sorted(set(HEAD_RULES) | set(MLP_PAIRS)))})"
        )
    return groups


# -- statistics --------------------------------------------------------------------------
@dataclass
class ChannelStats:
    """Running per-channel count, sum and sum of squares of a layer's inputs (float64)."""

    count: int = 0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        if self.total is None:
            self.total = torch.zeros(x.shape[1], dtype=torch.float64)
            self.squares = torch.zeros(x.shape[1], dtype=torch.float64)
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.squares += (x * x).sum(0)

    def mean(self) -> torch.Tensor:
        return self.total / self.count

    def norm(self) -> torch.Tensor:
        """``||X_c||_2`` over the observed rows."""
        return self.squares.clamp_min(0).sqrt()

    def variance(self) -> torch.Tensor:
        """Sample variance ``1/(N-1) sum_n (X_nc - mean_c)^2``."""
        if self.count < 2:
            raise PrunekitError("FLAP's variance needs at least 2 calibration tokens")
        m = self.mean()
        return ((self.squares - self.count * m * m) / (self.count - 1)).clamp_min(0)


def model_inputs(model: nn.Module, ids: torch.Tensor) -> dict[str, Any]:
    """Keyword inputs for a forward on token ids (no KV cache for decoders)."""
    kw: dict[str, Any] = {"input_ids": ids}
    if any(type(m).__name__ == "GPT2Attention" for m in model.modules()):
        kw["use_cache"] = False
    return kw


@torch.no_grad()
def collect_stats(
    model: nn.Module, groups: list[UnitGroup], data: torch.Tensor, batch_size: int = 8
) -> dict[str, ChannelStats]:
    """Input statistics of every group's output projection over ``data`` (token ids
    ``(n, L)``), one forward pass of the model as it is."""
    stats = {g.name: ChannelStats() for g in groups}
    handles = [
        g.consumer.register_forward_pre_hook(lambda _m, a, s=stats[g.name]: s.update(a[0]))
        for g in groups
    ]
    was_training = model.training
    model.eval()
    try:
        for i in range(0, data.shape[0], batch_size):
            model(**model_inputs(model, data[i : i + batch_size]))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return stats


# -- scores ------------------------------------------------------------------------------
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


# -- the whole model ---------------------------------------------------------------------
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

"""The removable units of a transformer for head / MLP-unit pruning
(:mod:`prunekit.lm.structured`): one :class:`UnitGroup` per attention module or MLP of
a known block type, and the per-channel statistics of their output projections' inputs
over calibration tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..autoshrink import HEAD_RULES, MLP_PAIRS
from ..pruning.reconstruction import weight_2d
from ..registry import PrunekitError


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

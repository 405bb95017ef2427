"""``head`` granularity: whole attention heads and MLP units of transformer blocks.

A head is the q/k/v rows of one attention head together with its output-projection
columns; an MLP unit is one row of the first MLP projection with its column of the
second. Per-module masks cannot see that structure (a head spans four weight
matrices and two layers' axes), so this granularity does not make masks itself: it
names the unit in the registry (``prunekit list``, run records, the LM grid) and
points callers to :func:`prunekit.prune_heads`, which scores heads and units, zeroes
them and removes them (``prunekit.lm.structured`` holds the formulas).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...registry import PrunekitError
from .base import GRANULARITIES, Granularity

_USE_PRUNE_HEADS = (
    "granularity 'head' removes whole attention heads and MLP units of transformer "
    "blocks: use prunekit.prune_heads(model, heads=..., neurons=..., criterion=...)"
)


class Head(Granularity):
    name: ClassVar[str] = "head"
    # False although heads are units: ``removes_units`` steers the per-module mask
    # machinery (unit groups, BatchNorm ties), which never sees heads; prune_heads
    # removes them itself.
    removes_units: ClassVar[bool] = False

    def masks(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        options: Any,
    ) -> dict[str, torch.Tensor]:
        raise PrunekitError(_USE_PRUNE_HEADS)


GRANULARITIES.add("head", Head())

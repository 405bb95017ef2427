"""Depth pruning: remove whole residual blocks (the residual branch becomes identity).

A block ``y = relu(F(x) + x)`` with an identity shortcut whose input ``x`` is itself
the output of a ReLU (every block of ``resnet20`` after the stem: ``x >= 0``) becomes
exactly ``y = relu(x) = x`` when its branch ``F`` is removed, so the whole block is
replaced by ``nn.Identity``. Blocks with a projection shortcut (stride or width change)
are kept: removing them would change the shapes.

Block importance (the lesion study of Veit et al. 2016, "Residual networks behave like
ensembles of relatively shallow networks"): the increase of the cross-entropy on
calibration data when only that block is skipped,

    I_b = CE(f without block b; x, y) - CE(f; x, y),

so the blocks whose removal costs the least loss go first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..pruning.masks import clone


def removable_blocks(model: nn.Module) -> list[str]:
    """Names of residual blocks with an identity ``shortcut`` (module docstring)."""
    return [
        name
        for name, m in model.named_modules()
        if name
        and isinstance(getattr(m, "shortcut", None), nn.Identity)
        and hasattr(m, "conv1")
        and hasattr(m, "conv2")
    ]


def without_blocks(model: nn.Module, names: list[str]) -> nn.Module:
    """A copy of ``model`` with the named blocks replaced by ``nn.Identity``."""
    small = clone(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = small.get_submodule(parent_name) if parent_name else small
        setattr(parent, child, nn.Identity())
    return small


@torch.no_grad()
def block_importance(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, blocks: list[str] | None = None
) -> dict[str, float]:
    """``I_b`` of every removable block on the calibration batch ``(x, y)``."""
    blocks = removable_blocks(model) if blocks is None else blocks
    was = model.training
    model.eval()
    try:
        base = float(F.cross_entropy(model(x), y))
        out = {}
        for b in blocks:
            m = without_blocks(model, [b]).eval()
            out[b] = float(F.cross_entropy(m(x), y)) - base
    finally:
        model.train(was)
    return out

"""Random criterion: ``score ~ U(0, 1)`` i.i.d. per weight, from the run's seeded
generator. The baseline every informed criterion must beat."""

from __future__ import annotations

import torch
from torch import nn

from ..masks import original
from . import Context, criterion


@criterion("random")
def random_scores(
    model: nn.Module, modules: dict[str, nn.Module], ctx: Context
) -> dict[str, torch.Tensor]:
    gen = ctx.generator if ctx.generator is not None else torch.Generator().manual_seed(0)
    return {name: torch.rand(original(m).shape, generator=gen) for name, m in modules.items()}

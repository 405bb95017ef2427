"""LAMP criterion (Lee, Park, Mo, Ahn & Shin 2021, "Layer-adaptive Sparsity for the
Magnitude-based Pruning", https://arxiv.org/abs/2010.07611).

Within one layer, sort the weights by magnitude, ``|w_1| <= |w_2| <= ... <= |w_n|``:

    score(w_u) = w_u^2 / sum_{v >= u} w_v^2

Inside a layer the order is the magnitude order (so layer-wise LAMP is magnitude
pruning); across layers the scores are comparable, so with ``scope="global"`` one
threshold gives each layer its own sparsity. The largest weight of every layer scores
1, so no layer is ever emptied. Weights already pruned score 0 and stay pruned.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masks import effective
from . import Context, criterion


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every entry of ``weight`` (same shape); ties share the order of
    ``torch.sort`` (stable)."""
    sq = weight.detach().reshape(-1).double() ** 2
    order = torch.sort(sq, stable=True).indices
    sorted_sq = sq[order]
    # suffix sums: sum over v >= u of the sorted squares
    tail = torch.flip(torch.cumsum(torch.flip(sorted_sq, [0]), 0), [0])
    out = torch.zeros_like(sq)
    out[order] = torch.where(tail > 0, sorted_sq / tail.clamp_min(1e-300), 0.0)
    return out.reshape(weight.shape).to(weight.dtype)


@criterion("lamp")
def lamp(model: nn.Module, modules: dict[str, nn.Module], ctx: Context) -> dict[str, torch.Tensor]:
    return {name: lamp_scores(effective(m)) for name, m in modules.items()}

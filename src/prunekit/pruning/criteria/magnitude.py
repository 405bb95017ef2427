"""Magnitude criterion: ``score(w_ij) = |w_ij|`` (Han et al. 2015, "Learning both
Weights and Connections for Efficient Neural Networks").

Reduced per unit by the neuron granularity this is the L1-norm filter ranking of
Li et al. 2017 ("Pruning Filters for Efficient ConvNets"): ``||W_j||_1 / fan_in``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masks import effective
from . import Context, criterion


@criterion("magnitude")
def magnitude(
    model: nn.Module, modules: dict[str, nn.Module], ctx: Context
) -> dict[str, torch.Tensor]:
    return {name: effective(m).detach().abs() for name, m in modules.items()}

"""BatchNorm recalibration: re-estimate running statistics after pruning.

Pruning (and SparseGPT's weight updates) changes the distribution of every
activation after the first pruned layer, but BatchNorm keeps normalising with the
running mean / variance of the dense model, which is a large part of the accuracy a
pruned network loses before fine-tuning (Li et al. 2020, "EagleEye: Fast Sub-net
Evaluation for Efficient Neural Network Pruning", adaptive BN). Recalibration runs
the calibration inputs through the model with only the BatchNorm layers in train
mode, their statistics reset and ``momentum=None`` (PyTorch then keeps the
cumulative average over the batches seen), under ``no_grad``: no weight, bias or
affine parameter changes; dropout stays off. With one batch (the default: all the
calibration inputs at once) the running statistics are exactly that batch's

    running_mean = mean_{n,h,w} x,    running_var = Σ (x − mean)² / (M − 1)

per channel, over the ``M`` values a channel sees (``M = N·H·W``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers that track running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, x: torch.Tensor, *, batch_size: int | None = None
) -> int:
    """Re-estimate every BatchNorm's running statistics on ``x``; returns the number
    of BatchNorm layers recalibrated (0: nothing to do, the model is unchanged)."""
    layers = batchnorm_layers(model)
    if not layers or x.shape[0] == 0:
        return 0
    was = model.training
    saved = [(m, m.momentum, m.training) for m in layers]
    device = next(model.parameters()).device
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        size = batch_size or x.shape[0]
        for i in range(0, x.shape[0], size):
            model(x[i : i + size].to(device))
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
        model.train(was)
    return len(layers)

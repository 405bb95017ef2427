"""Noise-sensitivity criterion: the estimated loss increase *under noise* when a weight
is removed, on a calibration batch.

Second-order estimate with the gradient term dropped (the model is near a minimum) and
the Hessian diagonal replaced by the empirical Fisher, as in Optimal Brain Damage
(LeCun et al. 1990) with the Fisher approximation (Theis et al. 2018, "Faster gaze
prediction with dense networks and Fisher pruning")::

    score(w_ij) = w_ij^2 * sum_b (dL_noisy,b / dw_ij)^2

where ``L_noisy,b`` is the cross-entropy on calibration mini-batch ``b`` corrupted by
the method's noise (``ctx.objective.corrupt``; clean data when the method has no noise
objective). Unitless, higher = keep. Option ``calibration_batches`` (default 8): the
calibration data ``ctx.data`` is split into that many mini-batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import PrunekitError
from ..masks import effective, original
from ..options import Options, option
from . import Context, criterion


@dataclass(frozen=True)
class NoiseSensitivityOptions(Options):
    calibration_batches: int = option(8, "batches the calibration set is split into")


@criterion("noise-sensitivity", NoiseSensitivityOptions, needs_data=True)
def noise_sensitivity(
    model: nn.Module, modules: dict[str, nn.Module], ctx: Context
) -> dict[str, torch.Tensor]:
    if ctx.data is None:
        raise PrunekitError("criterion 'noise-sensitivity' needs calibration data")
    x, y = ctx.data
    opts = NoiseSensitivityOptions.parse(ctx.options, "criterion 'noise-sensitivity'")
    n_batches = int(opts.calibration_batches)
    if n_batches < 1:
        raise PrunekitError(f"calibration_batches must be >= 1, got {n_batches}")
    corrupt = getattr(ctx.objective, "corrupt", None)
    size = math.ceil(x.shape[0] / n_batches)
    params = [original(m) for m in modules.values()]
    fisher = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()  # BatchNorm statistics must not move while scoring
    try:
        for i in range(0, x.shape[0], size):
            xb, yb = x[i : i + size], y[i : i + size]
            if corrupt is not None:
                xb = corrupt(xb, ctx.generator)
            loss = F.cross_entropy(model(xb), yb)
            grads = torch.autograd.grad(loss, params)
            for f, g in zip(fisher, grads, strict=True):
                f.add_(g.detach().square())
    finally:
        model.train(was_training)
    return {
        name: effective(m).detach().square() * f
        for (name, m), f in zip(modules.items(), fisher, strict=True)
    }

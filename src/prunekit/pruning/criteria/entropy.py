"""Entropy criterion (Luo & Wu 2017, "An entropy-based pruning method for CNN
compression"): a unit whose activation hardly varies over the data carries little
information, so the units with the lowest activation entropy are pruned first.

``score_j = H_j`` in nats, one score per output unit (shape ``(out,)``), higher = keep;
``H_j`` as defined in :mod:`prunekit.pruning.entropy` (activation after the unit's nonlinearity,
conv channels spatially pooled per example), measured on the calibration set
``ctx.data`` with the model in eval mode. A dead-ReLU unit (constant 0) gets the
lowest possible score: 0 (histogram) or ``0.5 log(2 pi e eps)`` (gaussian).

With the neuron granularity the units are ranked directly. Under the weight
granularity each weight is scored by its unit (``score(w_ij) = H_i``), i.e. weights
of low-entropy units go first.

Options (``ctx.options``): ``estimator`` ("histogram" | "gaussian", default
histogram), ``bins`` (histogram bins, default 32), ``calibration_batches`` (how many
batches of the calibration set to use; default all full ones), and
``calibration_batch_size`` (default 256). An empty calibration set, or one smaller
than a batch, is an error.

When the method's objective records entropies (``maxent``/``minent``), the scores
are handed to it (``ctx.objective.record_calibration``) so the run reports the
calibration entropies at the pruning event.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...registry import PrunekitError
from ..entropy import DEFAULT_BATCH_SIZE, DEFAULT_BINS, unit_entropies
from ..options import Options, option
from . import Context, criterion


@dataclass(frozen=True)
class EntropyOptions(Options):
    estimator: str = option("histogram", "'histogram' or 'gaussian'")
    bins: int = option(DEFAULT_BINS, "histogram bins")
    calibration_batches: int | None = option(None, "batches of the calibration set (all)")
    calibration_batch_size: int = option(DEFAULT_BATCH_SIZE, "calibration batch size")


@criterion("entropy", EntropyOptions, needs_data=True)
def entropy_scores(
    model: nn.Module, modules: dict[str, nn.Module], ctx: Context
) -> dict[str, torch.Tensor]:
    if ctx.data is None:
        raise PrunekitError("criterion 'entropy' needs calibration data (an empty calibration set)")
    opts = EntropyOptions.parse(ctx.options, "criterion 'entropy'")
    scores = unit_entropies(
        model,
        ctx.data[0],
        modules,
        estimator=opts.estimator,
        bins=opts.bins,
        batch_size=opts.calibration_batch_size,
        batches=opts.calibration_batches,
    )
    record = getattr(ctx.objective, "record_calibration", None)
    if record is not None:
        record(scores, opts.estimator)
    # The last pruning event's per-unit entropies, for the report's histogram.
    ctx.records["entropy"] = {
        "estimator": opts.estimator,
        "units": {n: [round(float(v), 4) for v in t.flatten()] for n, t in scores.items()},
    }
    return scores

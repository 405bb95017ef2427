"""Export the per-unit activation entropies of a saved run (for the report's plots).

``run_unit_entropies(run_dir)`` reloads the run's model (safetensors + JSON), takes the
same calibration set the pipeline's criteria use (:func:`prunekit.data.calibration_set`:
the first ``CALIBRATION_EXAMPLES`` validation images of the run's dataset and split;
training images when there is no validation split) and
measures ``H_j`` of every unit of every prunable layer but the classifier head, as
defined in :mod:`prunekit.pruning.entropy`. Units the run pruned (all-zero weights and bias)
read as constants and are listed under ``"pruned"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..pruning.entropy import DEFAULT_BATCH_SIZE, DEFAULT_BINS, find_taps, unit_entropies
from ..pruning.masks import effective, prunable_modules


def run_unit_entropies(
    run_dir: str | Path,
    *,
    estimator: str = "histogram",
    bins: int = DEFAULT_BINS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batches: int | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``{"entropy": {layer: [H_j, ...]}, "pruned": {layer: [j, ...]}, ...}`` in nats."""
    from ..data import calibration_set
    from ..storage.rundir import RunDir

    run_dir = Path(run_dir)
    saved_run = RunDir(run_dir)
    model = saved_run.model()
    data = saved_run.dataset(data_dir=data_dir, download=False)
    x, _ = calibration_set(data)
    layers = prunable_modules(model, include_last=False)
    h = unit_entropies(
        model, x, layers, estimator=estimator, bins=bins, batch_size=batch_size, batches=batches
    )
    return {
        "run": str(run_dir),
        "estimator": estimator,
        "bins": bins if estimator == "histogram" else None,
        "units": "nats",
        "calibration_examples": len(x) // batch_size * batch_size
        if batches is None
        else batches * batch_size,
        "activation": {n: t.path for n, t in find_taps(model, layers).items()},
        "entropy": {n: [round(float(v), 6) for v in t] for n, t in h.items()},
        "pruned": {n: dead_units(m) for n, m in layers.items()},
    }


def dead_units(module: torch.nn.Module) -> list[int]:
    """Indices of output units whose weights and bias are all exactly zero."""
    w = effective(module).detach().flatten(1)
    dead = (w == 0).all(1)
    bias = getattr(module, "bias", None)
    if bias is not None:
        dead &= effective(module, "bias").detach() == 0
    return [int(i) for i in torch.nonzero(dead).flatten()]

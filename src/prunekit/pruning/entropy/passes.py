"""Calibration passes: per-unit entropies of a model's layers over calibration data.

Calibration passes (:func:`unit_entropies`) never keep the data's activations: the
Gaussian estimator keeps per-unit running moments (count, mean, M2; Chan et al.'s
parallel update in float64), the histogram estimator a first pass for per-unit
min/max and a second for per-unit bin counts (``units x bins``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ...errors import PrunekitError
from ..masks import prunable_modules
from .estimators import (
    DEFAULT_BINS,
    VAR_FLOOR,
    RunningMoments,
    check_bins,
    check_estimator,
    entropy_from_counts,
    gaussian_entropy,
    histogram_counts,
)
from .taps import Tap, tapped

DEFAULT_BATCH_SIZE = 256


def calibration_batches(
    x: Tensor, batch_size: int = DEFAULT_BATCH_SIZE, batches: int | None = None
) -> list[Tensor]:
    """The first ``batches`` full batches of ``x`` (all full batches when None); the
    remainder that does not fill a batch is left out, so every batch weighs the same."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise PrunekitError(f"calibration batch size must be an integer >= 2, got {batch_size!r}")
    n = int(x.shape[0])
    if n == 0:
        raise PrunekitError("calibration set is empty; entropy needs data")
    if n < batch_size:
        raise PrunekitError(
            f"calibration set has {n} examples, fewer than one batch of "
            f"{batch_size}; give more data or a smaller calibration_batch_size"
        )
    available = n // batch_size
    if batches is not None:
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise PrunekitError(f"calibration_batches must be an integer >= 1, got {batches!r}")
        if batches > available:
            raise PrunekitError(
                f"calibration set has {n} examples: {batches} batches of "
                f"{batch_size} need {batches * batch_size}; lower "
                "calibration_batches or calibration_batch_size"
            )
        available = batches
    return [x[i * batch_size : (i + 1) * batch_size] for i in range(available)]


@torch.no_grad()
def unit_entropies(
    model: nn.Module,
    x: Tensor,
    layers: dict[str, nn.Module] | None = None,
    *,
    estimator: str = "histogram",
    bins: int = DEFAULT_BINS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batches: int | None = None,
    eps: float = VAR_FLOOR,
) -> dict[str, Tensor]:
    """Per-unit activation entropy ``{layer: H (units,)}`` in nats over the calibration
    inputs ``x`` (model in eval mode; restored afterwards). ``layers`` defaults to every
    prunable layer but the classifier head."""
    check_estimator(estimator)
    check_bins(bins)
    layers = layers if layers is not None else prunable_modules(model, include_last=False)
    chunks = calibration_batches(x, batch_size, batches)
    was_training = model.training
    model.eval()
    try:
        if estimator == "gaussian":
            moments = {name: RunningMoments() for name in layers}
            _passes(model, layers, chunks, lambda n, a: moments[n].update(a))
            return {n: gaussian_entropy(m.var(), eps).float() for n, m in moments.items()}
        lo: dict[str, Tensor] = {}
        hi: dict[str, Tensor] = {}

        def extremes(name: str, acts: Tensor) -> None:
            a = acts.double()
            lo[name] = torch.minimum(lo[name], a.min(0).values) if name in lo else a.min(0).values
            hi[name] = torch.maximum(hi[name], a.max(0).values) if name in hi else a.max(0).values

        _passes(model, layers, chunks, extremes)
        counts: dict[str, Tensor] = {}

        def fill(name: str, acts: Tensor) -> None:
            c = histogram_counts(acts.double(), lo[name], hi[name], bins)
            counts[name] = counts[name] + c if name in counts else c

        _passes(model, layers, chunks, fill)
        return {n: entropy_from_counts(counts[n]).float() for n in layers}
    finally:
        model.train(was_training)


def _passes(
    model: nn.Module,
    layers: dict[str, nn.Module],
    chunks: list[Tensor],
    sink: Callable[[str, Tensor], None],
) -> None:
    """One forward per chunk; each layer's hook must fire exactly once per forward."""
    seen: dict[str, int] = {}

    def counting(name: str, acts: Tensor) -> None:
        seen[name] = seen.get(name, 0) + 1
        sink(name, acts)

    with tapped(model, layers, counting) as taps:
        for chunk in chunks:
            seen.clear()
            model(chunk)
            check_fired(taps, seen)


def check_fired(taps: dict[str, Tap], seen: dict[str, int]) -> None:
    for name, tap in taps.items():
        if seen.get(name, 0) != 1:
            raise PrunekitError(
                f"layer {name!r}: the hook on {tap.hook!r} fired {seen.get(name, 0)} times in "
                "one forward (expected once); its activations cannot be hooked"
            )

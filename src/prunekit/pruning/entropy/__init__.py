"""Entropy of a unit's activations (spec §3): estimators, activation taps and
calibration passes, used by the entropy criterion, the entropy objectives and the
entropy export of a saved run.

- ``estimators.py``: what ``H_j`` is (histogram or Gaussian, in nats) given a unit's values;
- ``taps.py``: where unit ``j``'s activation is read (after its BatchNorm and
  nonlinearity, found with ``torch.fx``), as forward hooks;
- ``passes.py``: :func:`unit_entropies`, the calibration passes over data that feed
  the taps into the estimators without keeping the activations.
"""

from .estimators import (
    DEFAULT_BINS,
    ESTIMATORS,
    LOG_2PI_E,
    VAR_FLOOR,
    RunningMoments,
    batch_gaussian_entropy,
    check_bins,
    check_estimator,
    entropy_from_counts,
    gaussian_entropy,
    histogram_counts,
    histogram_entropy,
)
from .passes import DEFAULT_BATCH_SIZE, calibration_batches, check_fired, unit_entropies
from .taps import Tap, find_taps, original_out_units, pool_units, tapped

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BINS",
    "ESTIMATORS",
    "LOG_2PI_E",
    "VAR_FLOOR",
    "RunningMoments",
    "Tap",
    "batch_gaussian_entropy",
    "calibration_batches",
    "check_bins",
    "check_estimator",
    "check_fired",
    "entropy_from_counts",
    "find_taps",
    "gaussian_entropy",
    "histogram_counts",
    "histogram_entropy",
    "original_out_units",
    "pool_units",
    "tapped",
    "unit_entropies",
]

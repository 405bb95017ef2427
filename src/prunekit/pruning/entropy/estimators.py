"""Entropy estimators of one unit's activations: histogram and Gaussian, in nats.

``H_j`` is the entropy of unit ``j``'s activation (one scalar per example, read where
:mod:`prunekit.pruning.entropy.taps` says) over the data, in nats, by one of two
estimators:

- ``histogram``: the unit's values are binned into ``bins`` equal-width bins over
  the unit's own ``[min, max]`` on the data, ``p_k`` = fraction in bin k and
  ``H = -sum_k p_k log p_k``. In ``[0, log(bins)]``; 0 for a constant unit;
  invariant to the unit's scale and offset (it measures the *shape* of the
  distribution: a unit that is zero on most examples scores low).
- ``gaussian``: the differential entropy of a Gaussian with the unit's variance,
  ``H = 0.5 * log(2 pi e (sigma^2 + eps))`` with the variance floor ``eps``
  (default :data:`VAR_FLOOR` = 1e-6, so ``H >= 0.5 log(2 pi e 1e-6) = -5.49``). It can be
  negative (``H < 0`` iff ``sigma^2 + eps < 1/(2 pi e)``, sigma < 0.242), depends on the
  activation's scale (``log sigma`` plus a constant), and is differentiable, so it can
  sit in a training loss (:mod:`prunekit.pruning.objectives.entropy`). The floor keeps
  ``log`` finite for constant units and bounds ``dH/dsigma = sigma / (sigma^2 + eps)``
  by ``1 / (2 sqrt(eps))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import PrunekitError

LOG_2PI_E = math.log(2.0 * math.pi * math.e)
VAR_FLOOR = 1e-6
ESTIMATORS = ("histogram", "gaussian")
DEFAULT_BINS = 32


def gaussian_entropy(var: Tensor, eps: float = VAR_FLOOR) -> Tensor:
    """``0.5 * log(2 pi e (var + eps))`` in nats, elementwise; differentiable."""
    return 0.5 * (LOG_2PI_E + torch.log(var + eps))


def batch_gaussian_entropy(acts: Tensor, eps: float = VAR_FLOOR) -> Tensor:
    """Per-unit Gaussian entropy of ``acts`` of shape ``(N, units)``, with the (biased)
    variance over the N examples; differentiable w.r.t. ``acts``."""
    if acts.dim() != 2 or acts.shape[0] < 2:
        raise PrunekitError(f"need activations of shape (N >= 2, units), got {tuple(acts.shape)}")
    return gaussian_entropy(acts.var(0, unbiased=False), eps)


def histogram_counts(acts: Tensor, lo: Tensor, hi: Tensor, bins: int) -> Tensor:
    """Counts ``(units, bins)`` of ``acts`` ``(N, units)`` in equal-width bins over each
    unit's ``[lo, hi]``. Values outside are clipped to the end bins; a unit with
    ``hi == lo`` puts everything in bin 0."""
    n, units = acts.shape
    width = (hi - lo).clamp(min=0)
    scaled = (acts - lo) / torch.where(width > 0, width, torch.ones_like(width)) * bins
    idx = scaled.floor().clamp(0, bins - 1).long()
    idx = torch.where(width > 0, idx, torch.zeros_like(idx))
    flat = idx + torch.arange(units) * bins  # one histogram per unit in one bincount
    return (
        torch.bincount(flat.flatten(), minlength=units * bins).view(units, bins).to(torch.float64)
    )


def entropy_from_counts(counts: Tensor) -> Tensor:
    """``-sum_k p_k log p_k`` (nats) per row of a ``(units, bins)`` count table."""
    total = counts.sum(1, keepdim=True).clamp(min=1)
    p = counts / total
    h = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(1)
    return h + 0.0  # a constant unit gives -0.0; IEEE -0.0 + 0.0 is +0.0


def histogram_entropy(acts: Tensor, bins: int = DEFAULT_BINS) -> Tensor:
    """Per-unit histogram entropy of ``acts`` ``(N, units)`` (one batch, for tests/plots)."""
    check_bins(bins)
    acts = acts.detach().double()
    lo, hi = acts.min(0).values, acts.max(0).values
    return entropy_from_counts(histogram_counts(acts, lo, hi, bins))


def check_bins(bins: object) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise PrunekitError(f"bins must be an integer >= 2, got {bins!r}")
    return bins


def check_estimator(estimator: object) -> str:
    if estimator not in ESTIMATORS:
        raise PrunekitError(
            f"entropy estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}"
        )
    return str(estimator)


class RunningMoments:
    """Per-unit count/mean/M2 merged batch by batch (Chan, Golub & LeVeque 1979)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, acts: Tensor) -> None:
        x = acts.detach().double()
        nb = x.shape[0]
        mb = x.mean(0)
        m2b = ((x - mb) ** 2).sum(0)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n

    def var(self) -> Tensor:
        """Biased (population) variance, like :func:`batch_gaussian_entropy`."""
        assert self.m2 is not None
        return self.m2 / max(self.n, 1)

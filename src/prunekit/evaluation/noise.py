"""Input corruptions for robustness: Gaussian and salt-and-pepper noise.

Both act on images scaled to [0, 1] (``(N, C, H, W)``, or ``(N, D)`` flat vectors)
and draw every random number from the ``generator`` given, so the same seed gives
the same corrupted images; they serve as evaluation corruption
(``prunekit.evaluation.robustness``) and as training augmentation (the
``gaussian`` / ``saltpepper`` objectives).

- Gaussian: ``x' = clip(x + sigma * n, 0, 1)`` with ``n ~ N(0, 1)`` i.i.d. per value.
  The noise is added *before* clipping, so ``sigma`` is the standard deviation of
  the added noise (in [0, 1] intensity units); clipping then shrinks the effective
  perturbation near black/white pixels.
- Salt-and-pepper (impulse noise): in each image exactly ``k = round(p * P)`` of its
  ``P`` pixel locations are hit, half set to 0 (pepper) and half to 1 (salt); when
  ``k`` is odd the extra pixel is salt or pepper with probability 1/2 each, so the
  expected split is exactly half/half. A pixel location is hit in every channel at
  once (a dead/stuck sensor pixel), which for grayscale is one value.

Bad input raises :class:`PrunekitError`: ``sigma < 0``, ``p`` outside [0, 1], or
images outside [0, 1]. Clean data is never clipped silently: images out of range
mean the caller forgot to scale them (e.g. 0..255, or already normalized).
"""

from __future__ import annotations

import math

import torch

from ..registry import PrunekitError

NOISE_KINDS = ("gaussian", "saltpepper")


def check_images(x: torch.Tensor) -> None:
    """Refuse anything but a floating batch of images with every value in [0, 1]."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise PrunekitError(f"noise needs floating images, got {getattr(x, 'dtype', type(x))}")
    if x.ndim < 2:
        raise PrunekitError(f"noise needs a batch (N, ...) of images, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise PrunekitError(
            f"images must be scaled to [0, 1] before adding noise, found values in "
            f"[{lo:g}, {hi:g}]; prunekit does not clip clean data"
        )


def check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma >= 0.0):
        raise PrunekitError(f"Gaussian noise sigma must be a finite number >= 0, got {sigma:g}")
    return sigma


def check_density(density: float) -> float:
    density = float(density)
    if not 0.0 <= density <= 1.0:  # NaN fails too
        raise PrunekitError(f"salt-and-pepper density must be in [0, 1], got {density:g}")
    return density


def gaussian_noise(
    x: torch.Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
    *,
    clip: bool = True,
) -> torch.Tensor:
    """``clip(x + sigma * N(0, 1), 0, 1)``: a new tensor, ``x`` is not changed.

    ``clip=False`` returns ``x + sigma * n`` unclipped (to inspect the noise itself).
    Random numbers are drawn on the CPU from ``generator`` (so a CPU generator works
    for any device) and moved to ``x``'s device.
    """
    sigma = check_sigma(sigma)
    check_images(x)
    if sigma == 0.0:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    out = x + sigma * noise.to(x.device)
    return out.clamp_(0.0, 1.0) if clip else out


def salt_pepper_noise(
    x: torch.Tensor, density: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Set exactly ``round(density * P)`` of each image's ``P`` pixel locations to 0 or 1
    (half each, see the module docstring); a new tensor, ``x`` is not changed."""
    density = check_density(density)
    check_images(x)
    n = x.shape[0]
    # (N, C, P): pixel locations are the trailing dims; flat vectors are one channel.
    flat = x.reshape(n, 1, -1) if x.ndim == 2 else x.reshape(n, x.shape[1], -1)
    pixels = flat.shape[2]
    k = round(density * pixels)
    if k == 0 or n == 0:
        return x.clone()
    order = torch.rand((n, pixels), generator=generator).argsort(dim=1)[:, :k]
    n_pepper = torch.full((n, 1), k // 2, dtype=torch.long)
    if k % 2:
        n_pepper += torch.randint(0, 2, (n, 1), generator=generator)
    # The first n_pepper of the k chosen locations of each image become 0, the rest 1.
    is_pepper = torch.arange(k).unsqueeze(0) < n_pepper
    pepper = torch.zeros((n, pixels), dtype=torch.bool).scatter_(1, order, is_pepper)
    salt = torch.zeros((n, pixels), dtype=torch.bool).scatter_(1, order, ~is_pepper)
    out = flat.clone()
    out.masked_fill_(pepper.unsqueeze(1).to(x.device), 0.0)
    out.masked_fill_(salt.unsqueeze(1).to(x.device), 1.0)
    return out.reshape(x.shape)


def corrupt(
    x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``kind`` is ``"gaussian"`` (level = sigma) or ``"saltpepper"`` (level = density)."""
    if kind == "gaussian":
        return gaussian_noise(x, level, generator)
    if kind == "saltpepper":
        return salt_pepper_noise(x, level, generator)
    raise PrunekitError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")

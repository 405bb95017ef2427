"""Accuracy under input noise: Gaussian (several sigmas) and salt-and-pepper (several
densities), plus their mean. Reported for every run, whatever the method.

Every model in a comparison must see the *same* corrupted test set, so the noise of
each corruption is drawn from its own generator, seeded from ``(seed, kind, level)``
only: not from the run's seed, nor from which other levels are requested. The
default ``seed`` (``RunConfig.noise_eval_seed``) is fixed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .accuracy import accuracy
from .noise import check_density, check_images, check_sigma, corrupt

DEFAULT_SIGMAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
DEFAULT_DENSITIES: tuple[float, ...] = (0.05, 0.1, 0.2)
DEFAULT_EVAL_SEED = 1234


def level_key(level: float) -> str:
    """The JSON key of a noise level: shortest float text (0.1 -> "0.1", 0.05 -> "0.05")."""
    return f"{float(level):g}"


def corruption_generator(seed: int, kind: str, level: float) -> torch.Generator:
    """A CPU generator seeded from (seed, kind, level) by a stable hash (not Python's)."""
    digest = hashlib.sha256(f"{int(seed)}:{kind}:{level_key(level)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def corrupted(x: Tensor, kind: str, level: float, seed: int = DEFAULT_EVAL_SEED) -> Tensor:
    """The corrupted copy of ``x`` that evaluation uses for (kind, level, seed)."""
    return corrupt(x, kind, level, corruption_generator(seed, kind, level))


def robustness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    seed: int = DEFAULT_EVAL_SEED,
    batch_size: int = 1000,
) -> dict[str, object]:
    """Accuracy of ``model`` on ``(x, y)`` (images in [0, 1]) under each corruption.

    Returns ``{"accuracy_gaussian": {"0.1": acc, ...}, "accuracy_saltpepper":
    {"0.05": acc, ...}, "accuracy_corrupted_mean": mean}``, where the mean is the
    unweighted mean over all listed corruptions (None when both lists are empty).
    Accuracies are fractions in [0, 1]; at sigma = 0 / density = 0 they equal the
    clean accuracy exactly.
    """
    # Duplicates would count twice in the mean: keep the first of each level.
    sigmas = list(dict.fromkeys(check_sigma(s) for s in sigmas))
    densities = list(dict.fromkeys(check_density(p) for p in densities))
    check_images(x)
    out: dict[str, object] = {}
    every: list[float] = []
    for kind, levels in (("gaussian", sigmas), ("saltpepper", densities)):
        accs = {}
        for level in levels:
            acc = accuracy(model, corrupted(x, kind, level, seed), y, batch_size=batch_size)
            accs[level_key(level)] = acc
            every.append(acc)
        out[f"accuracy_{kind}"] = accs
    out["accuracy_corrupted_mean"] = sum(every) / len(every) if every else None
    return out

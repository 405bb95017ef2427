"""Robust-learning objectives: the spec's Gaussian and salt-and-pepper noise models.

Both train on batches of which a ``noise_fraction`` is corrupted by the model's noise
(``prunekit.evaluation.noise``; the rest stays clean) and add a penalty over the prunable
layers' *effective* weights (mask applied; biases are not penalized):

- ``gaussian`` (Gaussian noise model):       ``L = L_task + lam * sum_j theta_j^2``
- ``saltpepper`` (salt-and-pepper model):    ``L = L_task + lam * sum_j max(0, theta_j)^2``

``sigma`` is the Gaussian noise's standard deviation and ``density`` the fraction of
pixels hit by impulse noise, both on inputs in [0, 1]. The penalty is on top of the
optimizer's weight decay (the gradient of ``lam * theta^2`` is ``2 * lam * theta``).

The registered methods keep the objective on for the whole sparsify phase
(``objective_phase="all"``): noise shapes the weights before the pruning event and
the fine-tuning after it. Their criterion is the magnitude of the robustly trained
weights; the benchmark (``benchmarks/robustness.py``, results in
``benchmarks/results/robustness.md``) measured the noise-aware alternative
``noise-sensitivity`` against it on the same runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...evaluation.noise import check_density, check_sigma, corrupt
from ...registry import PrunekitError
from ..masks import effective
from ..method_docs import MethodDoc, describe
from ..methods import Method, register
from ..options import Options, RunFacts, option
from . import Objective, objective


class NoiseObjective(Objective):
    """Noise augmentation + an L2-type penalty (``positive_only``: on ``max(0, theta)``)."""

    def __init__(
        self, kind: str, level: float, noise_fraction: float, lam: float, positive_only: bool
    ) -> None:
        # The values were checked by the options' validate (the factory's boundary).
        self.name = kind
        self.kind = kind
        self.level = float(level)
        self.noise_fraction = float(noise_fraction)
        self.lam = float(lam)
        self.positive_only = positive_only
        self.modules: dict[str, nn.Module] = {}

    def attach(self, model: nn.Module, modules: dict[str, nn.Module]) -> None:
        self.modules = dict(modules)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The whole batch corrupted by this model's noise (criteria use it)."""
        return corrupt(x, self.kind, self.level, generator)

    def transform(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Training batches are already shuffled, so the first k are a random subset.
        k = round(self.noise_fraction * x.shape[0])
        if k == 0:
            return x, y
        x = x.clone()
        x[:k] = self.corrupt(x[:k], generator)
        return x, y

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if self.lam == 0.0 or not self.modules:
            return None
        return self.lam * weight_penalty(self.modules.values(), positive_only=self.positive_only)

    def describe(self) -> str:
        level = "sigma" if self.kind == "gaussian" else "density"
        return (
            f"{self.kind} {level}={self.level:g} noise_fraction={self.noise_fraction:g} "
            f"lambda={self.lam:g}"
        )


def weight_penalty(modules: object, *, positive_only: bool) -> torch.Tensor:
    """``sum theta^2`` (or ``sum max(0, theta)^2``) over the effective weights of ``modules``."""
    terms = []
    for m in modules:  # type: ignore[attr-defined]
        w = effective(m)
        terms.append((w.clamp(min=0.0) if positive_only else w).square().sum())
    return torch.stack(terms).sum()


_FRACTION = "fraction of each training batch that is noised"
_LAM = "strength of the weight penalty"


def _check_common(kind: str, noise_fraction: float, lam: float) -> None:
    if not 0.0 <= float(noise_fraction) <= 1.0:
        raise PrunekitError(f"noise_fraction must be in [0, 1], got {noise_fraction}")
    if not float(lam) >= 0.0:
        raise PrunekitError(f"{kind}: lambda must be >= 0, got {lam}")


@dataclass(frozen=True)
class GaussianOptions(Options):
    sigma: float = option(0.3, "std of the Gaussian input noise (images in [0, 1])")
    noise_fraction: float = option(0.5, _FRACTION)
    lam: float = option(5e-4, _LAM)

    def validate(self, run: RunFacts) -> None:
        check_sigma(self.sigma)
        _check_common("gaussian", self.noise_fraction, self.lam)


@dataclass(frozen=True)
class SaltPepperOptions(Options):
    density: float = option(0.1, "fraction of pixels set to 0 or 1")
    noise_fraction: float = option(0.5, _FRACTION)
    lam: float = option(5e-4, _LAM)

    def validate(self, run: RunFacts) -> None:
        check_density(self.density)
        _check_common("saltpepper", self.noise_fraction, self.lam)


@objective("gaussian", GaussianOptions)
def gaussian(o: GaussianOptions, run: RunFacts) -> NoiseObjective:
    """Gaussian noise model: ``L_task + lam * sum theta^2``, inputs noised with std ``sigma``."""
    return NoiseObjective("gaussian", float(o.sigma), o.noise_fraction, o.lam, positive_only=False)


@objective("saltpepper", SaltPepperOptions)
def saltpepper(o: SaltPepperOptions, run: RunFacts) -> NoiseObjective:
    """Salt-and-pepper model: ``L_task + lam * sum max(0, theta)^2``, impulse ``density``."""
    return NoiseObjective(
        "saltpepper", float(o.density), o.noise_fraction, o.lam, positive_only=True
    )


register(
    Method(
        "gaussian",
        criterion="magnitude",
        objective="gaussian",
        objective_phase="all",
        description="Gaussian noise model: train on inputs + N(0, sigma^2) noise (clipped), "
        "L = L_task + lambda * sum theta^2, prune smallest |w|, fine-tune with the noise on.",
    )
)
register(
    Method(
        "saltpepper",
        criterion="magnitude",
        objective="saltpepper",
        objective_phase="all",
        description="Salt-and-pepper noise model: train on impulse-noised inputs, "
        "L = L_task + lambda * sum max(0, theta)^2, prune smallest |w|, fine-tune with the noise on.",
    )
)
_NOISE_PAPER = (
    "prunekit's founding specification (the noise-model objectives as it states them); "
    "noise in training as regularization: Bishop 1995, Training with Noise is "
    "Equivalent to Tikhonov Regularization"
)
describe(
    "gaussian",
    MethodDoc(
        "Gaussian noise model",
        r"L = L_{task}\big(\operatorname{clip}(x + \varepsilon)\big) + \lambda \sum_j \theta_j^2,"
        r"\quad \varepsilon \sim \mathcal N(0, \sigma^2)",
        {
            "x": "an input image in [0, 1]; a `noise_fraction` of each batch is noised",
            r"\sigma": "the noise's standard deviation (`-o sigma=`)",
            r"\theta_j": "a weight of a prunable layer (mask applied)",
            r"\lambda": "penalty strength (`--lambda`)",
        },
        _NOISE_PAPER,
        "https://doi.org/10.1162/neco.1995.7.1.108",
        "When the deployed model will see noisy inputs: the noise stays on through the "
        "whole phase, so the pruned model keeps its accuracy under noise better than a "
        "model pruned on clean data.",
    ),
)
describe(
    "saltpepper",
    MethodDoc(
        "Salt-and-pepper noise model",
        r"L = L_{task}\big(\operatorname{sp}_p(x)\big) + \lambda \sum_j \max(0, \theta_j)^2",
        {
            r"\operatorname{sp}_p(x)": "x with a fraction p of its pixels set to 0 or 1 at random",
            "p": "the impulse density (`-o density=`)",
            r"\theta_j": "a weight of a prunable layer; only positive weights are penalized",
            r"\lambda": "penalty strength (`--lambda`)",
        },
        _NOISE_PAPER,
        "https://doi.org/10.1162/neco.1995.7.1.108",
        "When inputs may be hit by impulse noise (dead or saturated pixels): the model is "
        "trained and fine-tuned on such inputs.",
    ),
)

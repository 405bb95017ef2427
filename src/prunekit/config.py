"""Run configuration: one typed dataclass, JSON/YAML in and out, and a stable hash.

The hash covers only the fields that differ from their defaults, so adding a new
option later (with a default) keeps every old run id valid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from .registry import PrunekitError

# Where the files live does not change what the run computes.
_NOT_HASHED = {"data_dir", "download"}


@dataclass
class RunConfig:
    """One pipeline run: train dense -> prune (method, target) -> fine-tune -> evaluate.

    epochs / finetune_epochs: full passes over the training split.
    lr / batch_size: dense training; None takes the model's recipe.
    finetune_lr: the sparsify phase's initial lr; None = 0.1 x the dense lr.
    method_args: options routed to the method's objective or schedule (e.g. lambda).
    limit / test_limit: cap the number of training / test examples (smoke runs).
    """

    model: str = "lenet300"
    dataset: str = "fashion-mnist"
    method: str = "magnitude"
    sparsity: float = 0.9
    granularity: str | None = None
    scope: str | None = None
    schedule: str | None = None
    epochs: int = 2
    finetune_epochs: int = 1
    lr: float | None = None
    finetune_lr: float | None = None
    batch_size: int | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    data_dir: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    limit: int | None = None
    test_limit: int | None = None
    method_args: dict[str, Any] = field(default_factory=dict)
    latency_repeats: int = 30
    latency_batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    # Robustness evaluation (every run): accuracy under Gaussian noise of each sigma and
    # salt-and-pepper noise of each density, drawn with a fixed seed (not the run's).
    noise_sigmas: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.5])
    noise_densities: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    noise_eval_seed: int = 1234
    # Neuron-granularity runs: physically remove the zeroed units after fine-tuning, so
    # the saved model, its cost figures and latency are those of the smaller model.
    shrink: bool = True
    # Re-estimate BatchNorm running statistics on the calibration data after every
    # pruning event (no weight changes); a no-op for models without BatchNorm.
    recalibrate_bn: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.sparsity) < 1.0:
            raise PrunekitError(f"sparsity must be in [0, 1), got {self.sparsity}")
        for name in ("epochs", "finetune_epochs", "latency_repeats"):
            if int(getattr(self, name)) < 0:
                raise PrunekitError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.latency_repeats < 1:
            raise PrunekitError("latency_repeats must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise PrunekitError(f"limit must be >= 1, got {self.limit}")
        from .noise import check_density, check_sigma

        for sigma in self.noise_sigmas:
            check_sigma(sigma)
        for density in self.noise_densities:
            check_density(density)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PrunekitError(
                f"unknown config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def non_default(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            if f.name in _NOT_HASHED:
                continue
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            value = getattr(self, f.name)
            if value != default:
                out[f.name] = value
        return out

    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the non-default fields, JSON-canonical."""
        blob = json.dumps(self.non_default(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

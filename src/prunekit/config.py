"""Run configuration: one typed dataclass, JSON/YAML in and out, and a stable hash.

The hash covers only the fields that differ from their defaults, so adding a new
option later (with a default) keeps every old run id valid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from .checks import Check
from .registry import PrunekitError

#: Ceilings: far above any real run, low enough that a typo cannot ask for the impossible.
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
#: numpy and torch both take seeds below 2**32; a run also uses seed + 1 and seed + 2.
MAX_SEED = 2**32 - 3


def _opt(default: Any, check: Check, help: str) -> Any:
    """A RunConfig field: default (or factory, when callable), its check and its help,
    in one place (the CLI and the comparison config read them from the metadata)."""
    meta = {"check": check, "help": help}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def check_values(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Each known key of a partial run config through its field's check (unknown keys
    are left for :meth:`RunConfig.from_dict` to name): the CLI merges flags into a
    config file's values and must not trip over a wrongly typed one first."""
    checks = {f.name: f.metadata["check"] for f in fields(RunConfig)}
    return {k: checks[k](prefix + k, v) if k in checks else v for k, v in values.items()}


def option_help(name: str) -> str:
    """The help text of a RunConfig field."""
    return {f.name: f.metadata.get("help", "") for f in fields(RunConfig)}[name]


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

    model: str = _opt("lenet300", Check("str"), "Zoo model name (see `prunekit list`).")
    dataset: str = _opt("fashion-mnist", Check("str"), "Dataset name (see `prunekit list`).")
    method: str = _opt("magnitude", Check("str"), "Method name (see `prunekit list`).")
    sparsity: float = _opt(
        0.9, Check("float", lo=0, hi=1, hi_open=True), "Fraction of units of removal to prune."
    )
    granularity: str | None = _opt(
        None, Check("str", optional=True), "weight | neuron | kernel | nm (the method's)."
    )
    scope: str | None = _opt(
        None, Check("str", optional=True, choices=("global", "layer")), "global | layer."
    )
    schedule: str | None = _opt(
        None, Check("str", optional=True), "oneshot | iterative | cubic (the method's)."
    )
    epochs: int = _opt(2, Check("int", lo=0, hi=MAX_EPOCHS), "Dense training epochs.")
    finetune_epochs: int = _opt(
        1, Check("int", lo=0, hi=MAX_EPOCHS), "Epochs of the sparsify phase."
    )
    # A rate or a batch of 0 is never what a user means: refused, not replaced.
    lr: float | None = _opt(
        None, Check("float", lo=0, lo_open=True, optional=True), "Dense lr (model recipe)."
    )
    finetune_lr: float | None = _opt(
        None,
        Check("float", lo=0, lo_open=True, optional=True),
        "Sparsify-phase lr (0.1 x lr).",
    )
    batch_size: int | None = _opt(
        None, Check("int", lo=1, hi=MAX_BATCH, optional=True), "Batch size (model recipe)."
    )
    momentum: float | None = _opt(
        None, Check("float", lo=0, hi=1, hi_open=True, optional=True), "SGD momentum."
    )
    weight_decay: float | None = _opt(
        None, Check("float", lo=0, optional=True), "SGD weight decay (L2)."
    )
    seed: int = _opt(0, Check("int", lo=0, hi=MAX_SEED), "Seed for weights, data and masks.")
    data_dir: str | None = _opt(
        None, Check("str", optional=True), "Directory with the dataset's files."
    )
    download: bool = _opt(False, Check("bool"), "Download the dataset if not found.")
    val_fraction: float = _opt(
        0.1, Check("float", lo=0, hi=1, hi_open=True), "Validation share of the training set."
    )
    limit: int | None = _opt(
        None, Check("int", lo=1, optional=True), "At most this many training examples."
    )
    test_limit: int | None = _opt(
        None, Check("int", lo=1, optional=True), "At most this many test examples."
    )
    method_args: dict[str, Any] = _opt(
        dict, Check("dict"), "Options routed to the method (e.g. lam, cycles)."
    )
    latency_repeats: int = _opt(30, Check("int", lo=1, hi=100_000), "Timed repeats per batch size.")
    latency_batch_sizes: list[int] = _opt(
        lambda: [1, 64],
        Check("list", item=Check("int", lo=1, hi=MAX_BATCH)),
        "Batch sizes timed.",
    )
    # Robustness evaluation (every run): accuracy under Gaussian noise of each sigma and
    # salt-and-pepper noise of each density, drawn with a fixed seed (not the run's).
    noise_sigmas: list[float] = _opt(
        lambda: [0.1, 0.2, 0.3, 0.5],
        Check("list", item=Check("float")),
        "Gaussian noise sigmas of the robustness evaluation.",
    )
    noise_densities: list[float] = _opt(
        lambda: [0.05, 0.1, 0.2],
        Check("list", item=Check("float")),
        "Salt-and-pepper densities of the robustness evaluation.",
    )
    noise_eval_seed: int = _opt(
        1234, Check("int", lo=0, hi=MAX_SEED), "Seed of the robustness noise."
    )
    # Neuron-granularity runs: physically remove the zeroed units after fine-tuning, so
    # the saved model, its cost figures and latency are those of the smaller model.
    shrink: bool = _opt(True, Check("bool"), "Remove zeroed units (neuron granularity).")
    # Re-estimate BatchNorm running statistics on the calibration data after every
    # pruning event (no weight changes); a no-op for models without BatchNorm.
    recalibrate_bn: bool = _opt(
        True, Check("bool"), "Re-estimate BatchNorm statistics after each pruning event."
    )

    def __post_init__(self) -> None:
        # Every field through its check: wrong types and values fail here, one line
        # naming the key, before any data is read or any training starts.
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None:
                setattr(self, f.name, check(f.name, getattr(self, f.name)))
        from .evaluation.noise import check_density, check_sigma

        for sigma in self.noise_sigmas:
            check_sigma(sigma)
        for density in self.noise_densities:
            check_density(density)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise PrunekitError(
                f"a run config must be a mapping of options, got {type(data).__name__}"
            )
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

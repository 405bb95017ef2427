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


def _opt(
    default: Any,
    check: Check,
    help: str,
    *,
    compare: str,
    flag: str | None = None,
    short: str | None = None,
    shown: str | None = None,
    hashed: bool = True,
) -> Any:
    """A RunConfig field: its default (or factory, when callable), its check and its
    help, and how the other faces of the schema spell it (``prunekit.runoptions``):

    - ``compare``: where a comparison config sets it (``budget.lr``, ``data.limit``,
      ``evaluation.shrink``, or a grid key: ``models``, ``seeds``, ``methods[].args``);
    - ``flag``/``short``: the CLI flag when it is not ``--field-name`` (a boolean's
      ``--no-...`` form is derived);
    - ``shown``: what ``--help`` prints as the default when the default is None;
    - ``hashed``: False for where files live, which does not change what a run computes.
    """
    meta = {
        "check": check,
        "help": help,
        "compare": compare,
        "flag": flag,
        "short": short,
        "shown": shown,
        "hashed": hashed,
    }
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


def default(name: str) -> Any:
    """A RunConfig field's default: the one place it is written (``prunekit.prune``
    and the CLI read it from here)."""
    f = next(f for f in fields(RunConfig) if f.name == name)
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


_METHOD = "the method's"
_RECIPE = "model recipe"


@dataclass
class RunConfig:
    """One pipeline run: train dense -> prune (method, target) -> fine-tune -> evaluate.

    Every run option is one field here, with its default, check and help; the CLI
    flags, the comparison config keys, the reproduce command and the stable hash are
    all derived from these fields (``prunekit.runoptions``).
    """

    model: str = _opt(
        "lenet300", Check("str"), "Zoo model name (see `prunekit list`).", compare="models"
    )
    dataset: str = _opt(
        "fashion-mnist", Check("str"), "Dataset name (see `prunekit list`).", compare="dataset"
    )
    method: str = _opt(
        "magnitude", Check("str"), "Method name (see `prunekit list`).", compare="methods[].name"
    )
    sparsity: float = _opt(
        0.9,
        Check("float", lo=0, hi=1, hi_open=True),
        "Fraction of units of removal to prune; an N:M pattern (--nm) fixes it at 1-N/M.",
        compare="sparsities",
    )
    granularity: str | None = _opt(
        None,
        Check("str", optional=True),
        "weight | neuron | kernel | nm.",
        compare="methods[].granularity",
        shown=_METHOD,
    )
    scope: str | None = _opt(
        None,
        Check("str", optional=True, choices=("global", "layer")),
        "global | layer.",
        compare="methods[].scope",
        shown=_METHOD,
    )
    schedule: str | None = _opt(
        None,
        Check("str", optional=True),
        "oneshot | iterative | cubic.",
        compare="methods[].schedule",
        shown=_METHOD,
    )
    epochs: int = _opt(
        2, Check("int", lo=0, hi=MAX_EPOCHS), "Dense training epochs.", compare="budget.epochs"
    )
    finetune_epochs: int = _opt(
        1,
        Check("int", lo=0, hi=MAX_EPOCHS),
        "Epochs of the sparsify phase: regularize, prune, fine-tune.",
        compare="budget.finetune_epochs",
    )
    # A rate or a batch of 0 is never what a user means: refused, not replaced.
    lr: float | None = _opt(
        None,
        Check("float", lo=0, lo_open=True, optional=True),
        "Dense learning rate.",
        compare="budget.lr",
        shown=_RECIPE,
    )
    finetune_lr: float | None = _opt(
        None,
        Check("float", lo=0, lo_open=True, optional=True),
        "Sparsify-phase learning rate.",
        compare="budget.finetune_lr",
        shown="0.1 x lr",
    )
    batch_size: int | None = _opt(
        None,
        Check("int", lo=1, hi=MAX_BATCH, optional=True),
        "Batch size.",
        compare="budget.batch_size",
        shown=_RECIPE,
    )
    momentum: float | None = _opt(
        None,
        Check("float", lo=0, hi=1, hi_open=True, optional=True),
        "SGD momentum.",
        compare="budget.momentum",
        shown=_RECIPE,
    )
    weight_decay: float | None = _opt(
        None,
        Check("float", lo=0, optional=True),
        "SGD weight decay (L2).",
        compare="budget.weight_decay",
        shown=_RECIPE,
    )
    seed: int = _opt(
        0,
        Check("int", lo=0, hi=MAX_SEED),
        "Seed for weights, data order, split and masks.",
        compare="seeds",
    )
    data_dir: str | None = _opt(
        None,
        Check("str", optional=True),
        "Directory with the dataset's files.",
        compare="data.data_dir",
        shown="$PRUNEKIT_DATA, /usr/share/datasets, cache",
        hashed=False,
    )
    download: bool = _opt(
        False,
        Check("bool"),
        "Download the dataset into the cache if it is not found locally.",
        compare="data.download",
        hashed=False,
    )
    val_fraction: float = _opt(
        0.1,
        Check("float", lo=0, hi=1, hi_open=True),
        "Validation share of the training set.",
        compare="data.val_fraction",
    )
    limit: int | None = _opt(
        None,
        Check("int", lo=1, optional=True),
        "Use at most this many training examples.",
        compare="data.limit",
        shown="all",
    )
    test_limit: int | None = _opt(
        None,
        Check("int", lo=1, optional=True),
        "Use at most this many test examples.",
        compare="data.test_limit",
        shown="all",
    )
    # Routed to the method's objective, schedule, criterion or granularity by name.
    method_args: dict[str, Any] = _opt(
        dict,
        Check("dict"),
        "Extra method option KEY=VALUE (repeatable), e.g. lam=1e-4, cycles=3.",
        compare="methods[].args",
        flag="--option",
        short="-o",
    )
    latency_repeats: int = _opt(
        30,
        Check("int", lo=1, hi=100_000),
        "Timed repeats per batch size, median reported.",
        compare="evaluation.latency_repeats",
    )
    latency_batch_sizes: list[int] = _opt(
        lambda: [1, 64],
        Check("list", item=Check("int", lo=1, hi=MAX_BATCH)),
        "Batch sizes timed, comma-separated.",
        compare="evaluation.latency_batch_sizes",
    )
    # Robustness evaluation (every run): accuracy under Gaussian noise of each sigma and
    # salt-and-pepper noise of each density, drawn with a fixed seed (not the run's).
    noise_sigmas: list[float] = _opt(
        lambda: [0.1, 0.2, 0.3, 0.5],
        Check("list", item=Check("float")),
        "Gaussian sigmas for the robustness evaluation, comma-separated ('' = none).",
        compare="evaluation.noise_sigmas",
        flag="--eval-sigmas",
    )
    noise_densities: list[float] = _opt(
        lambda: [0.05, 0.1, 0.2],
        Check("list", item=Check("float")),
        "Salt-and-pepper densities for the robustness evaluation, comma-separated ('' = none).",
        compare="evaluation.noise_densities",
        flag="--eval-densities",
    )
    noise_eval_seed: int = _opt(
        1234,
        Check("int", lo=0, hi=MAX_SEED),
        "Seed of the robustness noise.",
        compare="evaluation.noise_eval_seed",
    )
    # Neuron-granularity runs: physically remove the zeroed units after fine-tuning, so
    # the saved model, its cost figures and latency are those of the smaller model.
    shrink: bool = _opt(
        True,
        Check("bool"),
        "Remove zeroed units after fine-tuning (neuron granularity).",
        compare="evaluation.shrink",
    )
    # Re-estimate BatchNorm running statistics on the calibration data after every
    # pruning event (no weight changes); a no-op for models without BatchNorm.
    recalibrate_bn: bool = _opt(
        True,
        Check("bool"),
        "Re-estimate BatchNorm statistics on the calibration data after each pruning event.",
        compare="budget.recalibrate_bn",
        flag="--bn-recalibration",
    )
    # Pruning + quantization: also export the finished model as float and int8 ONNX and
    # record bytes, int8 accuracy, agreement and ORT latency (prunekit.evaluation.int8).
    int8: bool = _opt(
        False,
        Check("bool"),
        "Also quantize the result to int8 ONNX (onnxruntime) and record its bytes, "
        "accuracy, agreement and latency.",
        compare="evaluation.int8",
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
            if not f.metadata["hashed"]:  # where the files live
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

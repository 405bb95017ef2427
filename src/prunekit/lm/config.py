"""What an LM run is asked to do: :class:`LMConfig` (its options, checks, stable hash
and the pruning spec it resolves to) and :func:`is_lm_config` (whether a CLI/config
mapping describes an LM run)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..registry import PrunekitError
from .models import is_lm_model
from .prune import LMPruneSpec
from .struct_run import StructSpec, is_structured, struct_spec
from .text import is_text_dataset


@dataclass
class LMConfig:
    """One LM run. ``sparsity``: None = 0.5, or the N:M pattern's ``1 - n/m``.
    ``method_args``: ``n``/``m`` (N:M), ``owl``, ``owl_lambda``,
    ``owl_m``, ``percdamp``, ``blocksize``. ``train_steps``: dense AdamW steps of
    ``batch_size`` random windows (gpt-tiny; a ``hf:`` model is used as loaded).
    ``recovery_steps``: optional masked fine-tuning after pruning (0 = one-shot).
    ``eval_windows``: windows scored per split, evenly spaced over it (200 x 128 =
    25,600 tokens; None = the whole split)."""

    model: str = "gpt-tiny"
    dataset: str = "python-stdlib"
    method: str = "magnitude"
    sparsity: float | None = None
    granularity: str | None = None
    method_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    context: int = 128
    train_steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 40
    calib_samples: int = 64
    calib_batch: int = 8
    recovery_steps: int = 0
    recovery_lr: float = 3e-4
    eval_windows: int | None = 200
    blocks: int = 100
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_chars: int | None = None
    throughput_repeats: int = 5

    def __post_init__(self) -> None:
        if self.sparsity is not None and not 0.0 <= float(self.sparsity) < 1.0:
            raise PrunekitError(f"sparsity must be in [0, 1), got {self.sparsity}")
        for name in ("context", "batch_size", "calib_samples", "calib_batch", "throughput_repeats"):
            if int(getattr(self, name)) < 1:
                raise PrunekitError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_steps", "recovery_steps", "warmup_steps"):
            if int(getattr(self, name)) < 0:
                raise PrunekitError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.granularity not in (None, "weight", "nm", "head"):
            raise PrunekitError(
                f"LM pruning takes granularity 'weight', 'nm' or 'head', got {self.granularity!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k, v in data.items() if k not in known and v is not None)
        if unknown:
            raise PrunekitError(
                f"option(s) {', '.join(unknown)} do not apply to language models; "
                f"LM options: {', '.join(sorted(known))}"
            )
        return cls(**{k: v for k, v in data.items() if k in known})

    def hash(self) -> str:
        """sha256 (16 hex digits) of the non-default fields, as RunConfig.hash."""
        out = {}
        for f in fields(self):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            if getattr(self, f.name) != default:
                out[f.name] = getattr(self, f.name)
        blob = json.dumps(out, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def spec(self) -> LMPruneSpec | StructSpec:
        """The pruning spec; N:M when ``granularity="nm"`` or n/m are given; heads and
        MLP units (``struct_run.StructSpec``) for a structured method / ``"head"``."""
        if is_structured(self.method, self.granularity):
            return struct_spec(self.method, self.sparsity, self.method_args)
        args = dict(self.method_args)
        n, m = args.pop("n", None), args.pop("m", None)
        if self.granularity == "nm" or n is not None or m is not None:
            n, m = int(n if n is not None else 2), int(m if m is not None else 4)
            if not 1 <= n < m:
                raise PrunekitError(f"N:M needs 1 <= N < M, got {n}:{m}")
            implied = 1 - n / m
            if self.sparsity is not None and abs(self.sparsity - implied) > 1e-9:
                raise PrunekitError(
                    f"the N:M pattern {n}:{m} fixes sparsity at {implied:g}; got {self.sparsity:g}"
                )
            args.update(n=n, m=m)
            sparsity = implied
        else:
            sparsity = 0.5 if self.sparsity is None else float(self.sparsity)
        known = {f.name for f in fields(LMPruneSpec)} - {"method", "sparsity", "exclude"}
        bad = sorted(set(args) - known)
        if bad:
            raise PrunekitError(
                f"LM method option(s) {', '.join(bad)} unknown; known: n, m, "
                + ", ".join(sorted(known - {"n", "m"}))
            )
        return LMPruneSpec(self.method, sparsity, exclude=tuple(self.exclude), **args)


def is_lm_config(values: dict[str, Any]) -> bool:
    """Whether a CLI/config mapping describes an LM run (by model or dataset name)."""
    return is_lm_model(str(values.get("model") or "")) or is_text_dataset(
        str(values.get("dataset") or "")
    )

"""What an LM run returns and leaves on disk: :class:`LMRun`, the result schema tag and
versions, and the model (with a ``hf:`` model's tokenizer) saved under ``RUN/hf`` in
``transformers`` format."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .text import Tokenizer

RESULT_SCHEMA = "prunekit.result/v1"


@dataclass
class LMRun:
    model: nn.Module
    result: dict[str, Any]
    tokenizer: Tokenizer


def save_hf(out: Path, model: nn.Module, tokenizer: Tokenizer) -> dict[str, int]:
    """The model (and a hf: model's tokenizer) under ``out/hf``; returns its bytes."""
    hf = out / "hf"
    model.save_pretrained(hf)
    if hasattr(tokenizer, "tok"):
        tokenizer.tok.save_pretrained(hf)  # type: ignore[attr-defined]
    raw = b"".join(p.read_bytes() for p in sorted(hf.glob("*.safetensors")))
    return {"size_bytes": len(raw), "size_bytes_gzip": len(gzip.compress(raw, 9))}


def versions() -> dict[str, Any]:
    import transformers

    from ..storage.record import versions as base_versions

    return {**base_versions(), "transformers": transformers.__version__}


def record_head(
    cfg: Any,
    spec: Any,
    granularity: str,
    nm: str | None,
    scope: str,
    metrics: dict[str, Any],
    dense: dict[str, Any],
) -> dict[str, Any]:
    """The leading fields of every LM ``result.json``: what ran, and the pruned and
    dense perplexities (``perplexity_ratio`` = pruned / dense test perplexity)."""
    return {
        "schema": RESULT_SCHEMA,
        "task": "lm",
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": spec.method,
        "granularity": granularity,
        "nm": nm,
        "scope": scope,
        "target_sparsity": spec.sparsity,
        **metrics,
        "perplexity_dense": dense["perplexity"],
        "val_perplexity_dense": dense["val_perplexity"],
        "perplexity_ratio": metrics["perplexity"] / dense["perplexity"],
    }


def record_tail(cfg: Any, data: Any, seconds: dict[str, float]) -> dict[str, Any]:
    """The trailing fields of every LM ``result.json``: calibration, data, seed, the
    phases' wall seconds, versions and the config with its hash."""
    return {
        "calibration": {"samples": cfg.calib_samples, "context": cfg.context, "split": "train"},
        "data": {
            "source": data.source,
            "tokenizer": data.tokenizer,
            "vocab_size": data.vocab_size,
            "tokens": {s: int(data.split(s).numel()) for s in ("train", "validation", "test")},
        },
        "seed": cfg.seed,
        "train_seconds": seconds,
        "versions": versions(),
        "config_hash": cfg.hash(),
        "config": cfg.to_dict(),
    }

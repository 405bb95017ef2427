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

    from ..pipeline import versions as base_versions

    return {**base_versions(), "transformers": transformers.__version__}

"""Text corpora for language models: raw text, contiguous-block splits, tokenizers.

Corpora
    ``text:PATH``      any UTF-8 file (invalid UTF-8 is refused, not replaced).
    ``python-stdlib``  the top-level ``*.py`` modules of the Python standard library
                       of the interpreter running prunekit (``sysconfig``'s ``stdlib``
                       path, files sorted by name, concatenated, capped at
                       ``STDLIB_BYTES``). Chosen because it is on every machine that can
                       run prunekit, with no download and no extra package; being the
                       running interpreter's own library, its text depends on the Python
                       version (recorded in result.json under ``versions.python``).

Splits (:func:`split_blocks`)
    The text is cut into ``blocks`` contiguous pieces of (almost) equal length in
    characters; a seeded permutation assigns ``round(val_fraction * blocks)`` pieces to
    validation, as many to test (``test_fraction``), the rest to train. Each split is its
    pieces in text order, joined. Whole pieces (not single windows) go to a split, so no
    context window of one split overlaps text of another, while every split still samples
    the whole file rather than only its end.

Tokenizers
    ``ByteTokenizer``: the UTF-8 bytes themselves (vocabulary 256), nothing to train,
    exact round trip. A ``hf:`` model brings its own tokenizer (``HFTokenizer``).
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ..registry import PrunekitError

STDLIB_BYTES = 4_000_000
CORPORA = ("python-stdlib",)


def is_text_dataset(name: str) -> bool:
    return name.startswith("text:") or name in CORPORA


def read_text(path: str | Path) -> str:
    """A UTF-8 file as a string; any other encoding is a one-line error."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PrunekitError(f"cannot read text file {p}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PrunekitError(
            f"{p} is not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


def stdlib_text(max_bytes: int = STDLIB_BYTES) -> tuple[str, str]:
    """(text, source): the standard library's top-level modules, sorted, capped."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for f in sorted(root.glob("*.py")):
        try:
            t = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a module in another encoding is skipped, not mangled
        parts.append(t)
        size += len(t.encode())
        if size >= max_bytes:
            break
    text = "".join(parts)
    if not text:
        raise PrunekitError(f"no Python sources found in {root}")
    return text[:max_bytes], f"{root}/*.py"


def load_text(name: str) -> tuple[str, str]:
    """(text, source) of a corpus name: ``text:PATH`` or a named corpus."""
    if name.startswith("text:"):
        path = name.removeprefix("text:")
        if not path:
            raise PrunekitError("--dataset text:PATH needs a path after 'text:'")
        return read_text(path), str(Path(path).expanduser().resolve())
    if name == "python-stdlib":
        return stdlib_text()
    raise PrunekitError(f"unknown text corpus {name!r}; known: text:PATH, {', '.join(CORPORA)}")


def split_blocks(
    text: str,
    *,
    blocks: int = 100,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, str]:
    """``{"train", "validation", "test"}`` texts from contiguous pieces (module docstring)."""
    if blocks < 3:
        raise PrunekitError(f"blocks must be >= 3 (one per split at least), got {blocks}")
    if len(text) < blocks:
        raise PrunekitError(f"text of {len(text)} characters is too short for {blocks} blocks")
    n_val = max(1, round(val_fraction * blocks))
    n_test = max(1, round(test_fraction * blocks))
    if n_val + n_test >= blocks:
        raise PrunekitError(
            f"val_fraction {val_fraction} + test_fraction {test_fraction} leave no training blocks"
        )
    bounds = [round(i * len(text) / blocks) for i in range(blocks + 1)]
    pieces = [text[bounds[i] : bounds[i + 1]] for i in range(blocks)]
    order = torch.randperm(blocks, generator=torch.Generator().manual_seed(seed)).tolist()
    val, test = sorted(order[:n_val]), sorted(order[n_val : n_val + n_test])
    train = sorted(order[n_val + n_test :])
    return {
        "train": "".join(pieces[i] for i in train),
        "validation": "".join(pieces[i] for i in val),
        "test": "".join(pieces[i] for i in test),
    }


class Tokenizer(Protocol):
    name: str
    vocab_size: int

    def encode(self, text: str) -> torch.Tensor: ...


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255."""

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()

    def decode(self, ids: torch.Tensor) -> str:
        return bytes(ids.to(torch.uint8).tolist()).decode("utf-8", errors="replace")


class HFTokenizer:
    """A ``transformers`` tokenizer (a ``hf:`` model's own), no special tokens added."""

    def __init__(self, tokenizer: object, name: str) -> None:
        self.tok = tokenizer
        self.name = name
        self.vocab_size = len(tokenizer)  # type: ignore[arg-type]

    def encode(self, text: str) -> torch.Tensor:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        return torch.tensor(ids, dtype=torch.long)


@dataclass
class TokenData:
    """Token streams (1-D int64) of the three splits, and where they came from."""

    name: str
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    tokenizer: str
    vocab_size: int
    source: str

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def load_tokens(
    name: str,
    tokenizer: Tokenizer,
    *,
    context: int,
    seed: int = 0,
    blocks: int = 100,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_chars: int | None = None,
) -> TokenData:
    """Read, split and tokenize corpus ``name``; every split must hold one window of
    ``context + 1`` tokens (a prediction for each of ``context`` positions), or the
    error names the file and the sizes."""
    text, source = load_text(name)
    if max_chars is not None:
        text = text[:max_chars]
    if len(text) < blocks:
        raise PrunekitError(
            f"{source}: {len(text)} characters is too small for context {context} "
            f"(each of train/validation/test needs more than {context} tokens)"
        )
    parts = split_blocks(
        text, blocks=blocks, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    streams = {k: tokenizer.encode(v) for k, v in parts.items()}
    for split, ids in streams.items():
        if ids.numel() < context + 1:
            raise PrunekitError(
                f"{source} is too small for context {context}: its {split} split has "
                f"{ids.numel()} tokens, needs at least {context + 1}"
            )
    return TokenData(
        name,
        streams["train"],
        streams["validation"],
        streams["test"],
        tokenizer.name,
        tokenizer.vocab_size,
        source,
    )


def windows(ids: torch.Tensor, context: int, max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping ``(n, context + 1)`` windows of a token stream (the last partial
    one dropped); window ``i`` starts at ``i * context``, so every token but the first is
    predicted exactly once. ``max_windows``: that many of them, evenly spaced over the
    stream (so a capped evaluation still samples every part of the split)."""
    n = (ids.numel() - 1) // context
    starts = torch.arange(n)
    if max_windows is not None and max_windows < n:
        starts = torch.linspace(0, n - 1, max_windows).round().long()
    idx = starts.unsqueeze(1) * context + torch.arange(context + 1)
    return ids[idx]

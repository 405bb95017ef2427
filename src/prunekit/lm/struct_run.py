"""The structured LM run's parts (the run itself is ``struct_lm.run_struct_lm``): (train dense
| load hf:) -> zero heads and MLP units -> shrink -> (recovery fine-tune of the small
model) -> measure -> save the small model.

Methods (granularity ``head``, see ``structured.py``): ``magnitude-struct``,
``wanda-struct`` and ``flap``. ``sparsity`` is the fraction of attention heads *and*
of MLP units removed in every block; ``-o heads=F`` / ``-o neurons=F`` set them apart,
``-o compensate=true|false`` FLAP's bias compensation (default: on for ``flap``),
``-o scope=global`` a per-block count chosen over the whole model. The
shrunk model is what is measured and saved: ``hf/`` holds a ``prunekit_gpt2`` model
(``hf_shrunk.py``: GPT-2 plus per-block head counts and MLP widths, copied beside the
weights), and tokens/s are timed interleaved with the dense model in the same loop
(medians, ``speedup`` with its interquartile range over the rounds).
"""

from __future__ import annotations

import gzip
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..registry import PrunekitError
from .structured import CRITERIA, SCOPES, STRUCT_METHODS, check_fraction, model_inputs


@dataclass(frozen=True)
class StructSpec:
    """A structured LM method: criterion and fractions of heads / MLP units removed."""

    method: str
    criterion: str
    heads: float
    neurons: float
    compensate: bool | None = None
    scope: str = "layer"
    # what the comparison store reads off every spec
    nm: bool = False
    owl: bool = False
    n: int | None = None
    m: int | None = None

    @property
    def sparsity(self) -> float:
        return max(self.heads, self.neurons)


def is_structured(method: str, granularity: str | None) -> bool:
    return method in STRUCT_METHODS or granularity == "head"


def struct_spec(method: str, sparsity: float | None, args: dict[str, Any]) -> StructSpec:
    """The spec of a structured LM run; bad options are one line."""
    criterion = STRUCT_METHODS.get(method, method)
    if criterion not in CRITERIA:
        raise PrunekitError(
            f"method {method!r} has no head granularity; structured LM methods: "
            f"{', '.join(STRUCT_METHODS)}"
        )
    args = dict(args)
    bad = sorted(set(args) - {"heads", "neurons", "compensate", "scope"})
    if bad:
        raise PrunekitError(
            f"structured LM option(s) {', '.join(bad)} unknown; known: compensate, heads, "
            "neurons, scope"
        )
    scope = args.get("scope", "layer")
    if scope not in SCOPES:
        raise PrunekitError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    base = 0.25 if sparsity is None else sparsity
    heads = check_fraction("heads", args.get("heads", base))
    neurons = check_fraction("neurons", args.get("neurons", base))
    compensate = args.get("compensate")
    if compensate is not None and not isinstance(compensate, bool):
        raise PrunekitError(f"compensate must be true or false, got {compensate!r}")
    name = method if method in STRUCT_METHODS else f"{criterion}-struct"
    return StructSpec(name, criterion, heads, neurons, compensate, scope)


def interleaved_throughput(
    dense: nn.Module, small: nn.Module, context: int, vocab_size: int, *, repeats: int = 15
) -> dict[str, Any]:
    """Tokens/s of both models on the same ``8 x context`` batch, timed in alternating
    rounds (``prunekit.evaluation.latency.interleaved_samples``), so that load drift
    hits both alike: medians, and the speed-up's median and IQR over rounds."""
    from ..evaluation.latency import interleaved_samples

    x = torch.randint(0, vocab_size, (8, context), generator=torch.Generator().manual_seed(0))
    dense.eval()
    small.eval()
    calls = {
        "dense": lambda: dense(**model_inputs(dense, x)),
        "pruned": lambda: small(**model_inputs(small, x)),
    }
    ms = interleaved_samples(calls, repeats=repeats, warmup=2, alternate=True)
    ratios = sorted(d / p for d, p in zip(ms["dense"], ms["pruned"], strict=True))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    tokens = x.numel()
    return {
        "tokens_per_s": tokens / (statistics.median(ms["pruned"]) / 1000),
        "tokens_per_s_dense": tokens / (statistics.median(ms["dense"]) / 1000),
        "speedup": statistics.median(ratios),
        "speedup_iqr": [q[0], q[2]],
        "timing_repeats": repeats,
        "threads": torch.get_num_threads(),
    }


def model_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the model's safetensors file(s) as ``save_pretrained`` writes them."""
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        raw = b"".join(p.read_bytes() for p in sorted(Path(d).glob("*.safetensors")))
    return {"size_bytes": len(raw), "size_bytes_gzip": len(gzip.compress(raw, 9))}

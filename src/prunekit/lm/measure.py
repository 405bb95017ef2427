"""What an LM run reports about a model: perplexity on the validation and test splits,
throughput, parameters and nonzeros, per-layer sparsity of the prunable linears."""

from __future__ import annotations

from typing import Any

from torch import nn

from .blocks import prunable_linears
from .config import LMConfig
from .metrics import perplexity, tokens_per_second
from .text import TokenData


def layer_stats(model: nn.Module) -> dict[str, dict[str, Any]]:
    out = {}
    for name, m in prunable_linears(model).items():
        w = m.weight
        nz = int((w != 0).sum())
        out[name] = {"params": w.numel(), "nonzero": nz, "sparsity": 1 - nz / w.numel()}
    return out


def measure(model: nn.Module, data: TokenData, cfg: LMConfig) -> dict[str, Any]:
    """Perplexity (validation, test), throughput, parameters and nonzeros."""
    ppl = {
        split: perplexity(model, data.split(split), cfg.context, max_windows=cfg.eval_windows)
        for split in ("validation", "test")
    }
    params = {id(p): p for p in model.parameters()}  # tied weights counted once
    total = sum(p.numel() for p in params.values())
    nonzero = sum(int((p != 0).sum()) for p in params.values())
    layers = layer_stats(model)
    block_total = sum(v["params"] for v in layers.values())
    block_zero = sum(v["params"] - v["nonzero"] for v in layers.values())
    return {
        "perplexity": ppl["test"],
        "val_perplexity": ppl["validation"],
        "achieved_sparsity": block_zero / block_total,
        "params_total": total,
        "params_nonzero": nonzero,
        "tokens_per_s": tokens_per_second(
            model, cfg.context, data.vocab_size, repeats=cfg.throughput_repeats
        ),
        "layers": layers,
    }

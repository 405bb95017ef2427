"""A saved LM run read back: the pruned model (``from_pretrained`` on ``RUN/hf``) and
its measurements taken again on the data its config names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..registry import PrunekitError
from .config import LMConfig
from .measure import measure
from .models import build_lm
from .train import data_for


def reload(run_dir: str | Path) -> nn.Module:
    """The pruned model of a saved LM run (``from_pretrained`` on ``RUN/hf``)."""
    from transformers import AutoModelForCausalLM

    from .hf_shrunk import register

    register()  # a head-pruned GPT-2 (prunekit_gpt2) loads without remote code
    hf = Path(run_dir) / "hf"
    if not (hf / "config.json").is_file():
        raise PrunekitError(f"{run_dir} holds no language model (no hf/config.json)")
    return AutoModelForCausalLM.from_pretrained(hf, local_files_only=True).eval()


def evaluate_saved_lm(run_dir: str | Path) -> dict[str, Any]:
    """Reload a saved LM run (``from_pretrained``) and measure it again on its data."""
    run_dir = Path(run_dir)
    try:
        saved = json.loads((run_dir / "result.json").read_text())
        cfg = LMConfig.from_dict(saved["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PrunekitError(f"{run_dir / 'result.json'} is missing or corrupted: {e}") from None
    model = reload(run_dir)
    _, tok = (
        build_lm(cfg.model, **cfg.model_args)
        if not cfg.model.startswith("hf:")
        else (
            None,
            build_lm(f"hf:{run_dir / 'hf'}")[1],
        )
    )
    data = data_for(cfg, tok)
    return {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": saved.get("method"),
        "target_sparsity": saved.get("target_sparsity"),
        **measure(model, data, cfg),
    }

"""The LM run: (train dense | load hf:) -> prune the blocks -> (recovery) -> measure -> save.

The same shape as the image pipeline (``prunekit.pipeline.run``) with tokens for
images and perplexity for accuracy; ``prunekit prune`` dispatches here when the model
is a language model (``gpt-tiny``, ``hf:PATH``). A run directory holds ``result.json``
and the pruned model in ``transformers`` format under ``hf/`` (``from_pretrained``
loads it; a ``hf:`` model's tokenizer is saved beside it).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from torch import nn

from ..storage.atomic import atomic_write_json
from ..storage.outdir import check_out_dir
from .config import LMConfig
from .measure import measure
from .models import build_lm
from .prune import check_spec, prune_lm
from .record import LMRun, record_head, record_tail, save_hf
from .struct_lm import run_struct_lm
from .struct_run import StructSpec
from .text import TokenData, Tokenizer
from .train import calibration, recover, train_dense


def run_lm(
    cfg: LMConfig,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    dense: tuple[nn.Module, Tokenizer, TokenData, float, dict[str, Any]] | None = None,
) -> LMRun:
    """The whole LM run. ``dense`` = (trained model, tokenizer, data, seconds, its
    measurements) lets a comparison train and measure the dense LM once; it is copied."""
    spec = cfg.spec()
    if isinstance(spec, StructSpec):  # whole heads and MLP units, removed physically
        return run_struct_lm(cfg, spec, out=out, overwrite=overwrite, dense=dense)
    if out is not None:
        check_out_dir(Path(out), cfg.hash(), overwrite=overwrite)
    t_start = time.perf_counter()
    if dense is None:
        probe, _tok = (
            build_lm(cfg.model, **cfg.model_args)
            if not cfg.model.startswith("hf:")
            else (None, None)
        )
        if probe is not None:  # bad N:M / exclusions fail before any training
            check_spec(probe, spec)
        model, tok, data, dense_s = train_dense(cfg)
        dense_metrics = measure(model, data, cfg)
    else:
        base, tok, data, dense_s, dense_metrics = dense
        model = copy.deepcopy(base)
    check_spec(model, spec)
    t0 = time.perf_counter()
    calib = calibration(data, cfg)
    report = prune_lm(model, spec, calib, batch_size=cfg.calib_batch)
    prune_s = time.perf_counter() - t0
    recovery_s = recover(model, data, cfg) if cfg.recovery_steps else 0.0
    metrics = measure(model, data, cfg)
    seconds = {"dense": dense_s, "prune": prune_s, "recovery": recovery_s}
    result: dict[str, Any] = {
        **record_head(
            cfg,
            spec,
            "nm" if spec.nm else "weight",
            f"{spec.n}:{spec.m}" if spec.nm else None,
            "owl" if spec.owl else "layer",
            metrics,
            dense_metrics,
        ),
        "tokens_per_s_dense": dense_metrics["tokens_per_s"],
        "block_sparsity": report["block_sparsity"],
        "owl_lambda": report["owl_lambda"],
        **record_tail(cfg, data, {**seconds, "total": time.perf_counter() - t_start}),
    }
    if out is not None:
        out = Path(out)
        result.update(save_hf(out, model, tok))
        atomic_write_json(out / "result.json", result)
    return LMRun(model=model, result=result, tokenizer=tok)

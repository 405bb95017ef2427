"""The structured LM run: (train dense | load hf:) -> zero whole heads and MLP units ->
shrink -> (recovery) -> measure, timed interleaved with the dense model -> save the small
model. Its options and timing helpers are in :mod:`.struct_run`; :func:`.run.run_lm`
dispatches here for a structured method."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from ..storage.atomic import atomic_write_json
from ..storage.outdir import check_out_dir
from .config import LMConfig
from .measure import measure
from .record import LMRun, record_head, record_tail, save_hf
from .struct_run import StructSpec, interleaved_throughput, model_bytes
from .structured import model_inputs, prune_heads
from .train import calibration, recover, train_dense


def run_struct_lm(
    cfg: LMConfig,
    spec: StructSpec,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    dense: tuple | None = None,
) -> LMRun:
    """The structured LM run (``struct_run``'s docstring): prune heads and MLP units, shrink,
    measure and save the small model."""
    from .structured import find_groups, pretrained_form

    if out is not None:
        check_out_dir(Path(out), cfg.hash(), overwrite=overwrite)
    t_start = time.perf_counter()
    if dense is None:
        base, tok, data, dense_s = train_dense(cfg)
        dense_metrics = measure(base, data, cfg)
    else:
        base, tok, data, dense_s, dense_metrics = dense
    find_groups(base)  # a model without known blocks fails before any work
    masked = copy.deepcopy(base)
    t0 = time.perf_counter()
    calib = calibration(data, cfg)
    small = prune_heads(
        masked,
        heads=spec.heads,
        neurons=spec.neurons,
        criterion=spec.criterion,
        data=calib,
        compensate=spec.compensate,
        scope=spec.scope,
        example_inputs=model_inputs(masked, calib[:2]),
    )
    report = small.prunekit_structured
    if type(small).__name__ == "GPT2LMHeadModel":
        small = pretrained_form(small)
    del masked
    prune_s = time.perf_counter() - t0
    recovery_s = recover(small, data, cfg) if cfg.recovery_steps else 0.0
    metrics = measure(small, data, cfg)
    timing = interleaved_throughput(
        base, small, cfg.context, data.vocab_size, repeats=max(15, cfg.throughput_repeats)
    )
    params_dense = sum({id(p): p.numel() for p in base.parameters()}.values())
    seconds = {"dense": dense_s, "prune": prune_s, "recovery": recovery_s}
    result: dict[str, Any] = {
        **record_head(cfg, spec, "head", None, spec.scope, metrics, dense_metrics),
        **timing,
        "params_total_dense": params_dense,
        "params_removed_fraction": 1 - metrics["params_total"] / params_dense,
        "structured": {
            **report,
            "compensate": spec.criterion == "flap" if spec.compensate is None else spec.compensate,
        },
        "block_sparsity": None,
        "owl_lambda": None,
        **record_tail(cfg, data, {**seconds, "total": time.perf_counter() - t_start}),
    }
    result.update(model_bytes(small))
    result["size_bytes_dense"] = model_bytes(base)["size_bytes"]
    if out is not None:
        out = Path(out)
        result.update(save_hf(out, small, tok))
        atomic_write_json(out / "result.json", result)
    return LMRun(model=small, result=result, tokenizer=tok)

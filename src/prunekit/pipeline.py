"""The pipeline: train dense -> prune (method, target) -> fine-tune -> evaluate -> save.

``run(config)`` is what ``prunekit prune`` and the comparison harness call. Every
figure in the result comes from ``prunekit.evaluation``; nothing is copied from
the config except the config itself (under ``"config"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RunConfig
from .data import (  # noqa: F401  (CALIBRATION_EXAMPLES, dataset_for: re-exported)
    CALIBRATION_EXAMPLES,
    DATASETS,
    Dataset,
    calibration_set,
    dataset_for,
)
from .distributed import is_main, rank, world_size
from .evaluation import accuracy, measure_latency, summary
from .evaluation.allocator import allocator_in_effect
from .evaluation.interleaved import speedup_with_spread
from .evaluation.robustness import robustness
from .models import create_model, default_recipe
from .pruner import Pruner
from .pruning.masks import clone, finalize
from .pruning.methods import Method
from .pruning.phase import PruningPhase
from .pruning.reconstruction.batchnorm import batchnorm_layers
from .registry import PrunekitError
from .spec import RunSpec, resolve
from .storage.integrity import check_alive, data_fingerprint
from .storage.outdir import check_out_dir, check_same_data
from .storage.record import RESULT_SCHEMA, Run, versions
from .storage.rundir import RunDir
from .surgery.shrink import shrink_for_result
from .training import TrainSettings, fit, steps_per_epoch
from .visualize import input_connections


def validate(cfg: RunConfig) -> Method:
    """The resolved method of ``cfg`` (see :func:`prunekit.spec.resolve`, which checks
    everything once; kept for callers that need only the method)."""
    return resolve(cfg).method


def settings_for(cfg: RunConfig, *, finetune: bool) -> TrainSettings:
    recipe = default_recipe(cfg.model)
    lr = cfg.lr or recipe["lr"]
    if finetune:
        lr = cfg.finetune_lr or 0.1 * lr
    return TrainSettings(
        lr=lr,
        momentum=recipe["momentum"] if cfg.momentum is None else cfg.momentum,
        weight_decay=recipe["weight_decay"] if cfg.weight_decay is None else cfg.weight_decay,
        batch_size=cfg.batch_size or recipe["batch_size"],
    )


def architecture(cfg: RunConfig, data: Dataset) -> dict[str, Any]:
    c, h, _ = data.input_shape
    kwargs = {
        "in_channels": c,
        "input_size": h,
        "num_classes": data.num_classes,
        "mean": float(data.mean),
        "std": float(data.std),
    }
    return {"name": cfg.model, "kwargs": kwargs, "input_shape": list(data.input_shape)}


def train_dense(
    cfg: RunConfig, data: Dataset, *, progress: bool = False
) -> tuple[nn.Module, dict[str, Any], float]:
    """Build the zoo model and train it densely; returns (model, arch, seconds)."""
    arch = architecture(cfg, data)
    torch.manual_seed(cfg.seed)
    model = create_model(arch["name"], **arch["kwargs"])
    settings = settings_for(cfg, finetune=False)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    steps = cfg.epochs * steps_per_epoch(len(data.train), settings.batch_size)
    fit(
        model,
        data.train,
        steps=steps,
        settings=settings,
        generator=gen,
        progress=progress,
        desc=f"dense {cfg.model}",
    )
    return model, arch, time.perf_counter() - t0


def sparsify(
    model: nn.Module,
    cfg: RunConfig,
    data: Dataset,
    method: Method | RunSpec,
    *,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> PruningPhase:
    """The method's phase: objective, pruning events and fine-tuning, in place.
    ``method``: the run's :class:`RunSpec` (checked once by ``resolve``, trusted here)
    or a ``Method`` (checked by the ``Pruner``). ``callbacks``: more ``fit`` callbacks,
    run after the pruner's (distillation)."""
    settings = settings_for(cfg, finetune=True)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    calib = calibration_set(data)  # the first CALIBRATION_EXAMPLES validation examples
    # The same Pruner a user drives in their own loop, driven here by fit
    pruner = Pruner(
        model,
        method,
        cfg.sparsity,
        cfg.finetune_epochs * steps_per_epoch(len(data.train), settings.batch_size),
        data=calib,
        generator=torch.Generator().manual_seed(cfg.seed + 2),
        allow_short=True,  # a zero-epoch phase prunes at its end
        recalibrate_bn=cfg.recalibrate_bn,
    )
    fit(
        model,
        data.train,
        steps=pruner.steps,
        settings=settings,
        generator=gen,
        callbacks=[pruner.callback(), *callbacks],
        progress=progress,
        desc=f"{pruner.method.name} {cfg.sparsity:g}",
    )
    finalize(model)
    return pruner.phase


def latency_with_reference(
    model: nn.Module, reference: nn.Module | None, input_shape: tuple[int, ...], cfg: RunConfig
) -> dict[str, Any]:
    """``latency_ms`` of ``model`` and the allocator it was timed under
    (``latency_allocator``: ``"steady"`` or ``"default"``, see
    :mod:`prunekit.evaluation.allocator`); with a ``reference`` (the dense model it
    came from) also ``latency_ms_dense`` and ``speedup`` = the median of the per-repeat ratios dense ms /
    pruned ms (:mod:`prunekit.evaluation.interleaved`), both timed INTERLEAVED in one
    loop, so a load spike on this shared machine hits both alike and the ratio stays
    honest even when the absolute figures move."""
    sizes = tuple(cfg.latency_batch_sizes)
    # The latency tables are timed under the steady allocator: so is this, or the
    # predictor would be checked against figures taken under another one.
    allocator = allocator_in_effect()
    if reference is None:
        ms = measure_latency(model, input_shape, sizes, repeats=cfg.latency_repeats)
        return {"latency_ms": ms, "latency_allocator": allocator}
    # Also keeps the spread of the per-repeat ratios and the machine load (``timing``),
    # which the comparison report needs to tell a speed-up from noise.
    timed = speedup_with_spread(model, reference, input_shape, sizes, repeats=cfg.latency_repeats)
    return {**timed, "latency_allocator": allocator}


def evaluate(
    model: nn.Module,
    data: Dataset,
    input_shape: tuple[int, int, int],
    cfg: RunConfig,
    *,
    reference: nn.Module | None = None,
) -> dict[str, Any]:
    """Every measured figure of a finished model (see README, result schema).
    ``reference``: the dense model, timed interleaved with this one (see
    :func:`latency_with_reference`)."""
    s = summary(model, input_shape)
    metrics = {
        "accuracy": accuracy(model, data.test.x, data.test.y),
        "val_accuracy": accuracy(model, data.val.x, data.val.y) if len(data.val) else None,
        # The sampling error of an accuracy p on n examples is sqrt(p (1 - p) / n).
        "test_examples": len(data.test),
        "val_examples": len(data.val),
        "achieved_sparsity": s["achieved_sparsity"],
        "params_total": s["params_total"],
        "params_nonzero": s["params_nonzero"],
        "macs_dense": s["macs_dense"],
        "macs_effective": s["macs_effective"],
        "size_bytes": s["size_bytes"],
        "size_bytes_gzip": s["size_bytes_gzip"],
        **latency_with_reference(model, reference, input_shape, cfg),
        **robustness(
            model,
            data.test.x,
            data.test.y,
            sigmas=cfg.noise_sigmas,
            densities=cfg.noise_densities,
            seed=cfg.noise_eval_seed,
        ),
        "layers": s["layers"],
    }
    if cfg.int8:  # pruning + quantization (prunekit.evaluation.int8)
        from .evaluation.int8 import int8_metrics

        metrics["int8"] = int8_metrics(
            model,
            reference,
            data,
            input_shape,
            batch_sizes=tuple(cfg.latency_batch_sizes),
            repeats=cfg.latency_repeats,
        )
    return metrics


def run(
    cfg: RunConfig | RunSpec | Callable[[], nn.Module],
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    dense: tuple[nn.Module, float] | None = None,
    data: Dataset | None = None,
    **user_objects: Any,
) -> Run:
    """Run the whole pipeline; with ``out`` also save the run directory.

    ``cfg`` is a :class:`RunConfig` (zoo model and dataset by name; resolved and
    checked once by :func:`prunekit.spec.resolve`), a :class:`RunSpec` already
    resolved (a comparison's cells), or a callable that
    builds an ``nn.Module``; the latter takes ``train=``, ``val=``, ``test=`` DataLoaders,
    ``loss_fn=``, ``method=``, ``sparsity=`` ... (``prunekit.userrun.run_model``).
    ``dense`` = (trained dense model, its training seconds) lets a comparison train
    the dense model once per (model, seed) and reuse it; it is copied, not changed.
    ``progress``: bars on stderr (on by default; the CLI's ``--quiet`` and the
    comparison turn them off).
    """
    if not isinstance(cfg, RunConfig | RunSpec):
        from .userrun import run_model

        return run_model(cfg, out=out, overwrite=overwrite, progress=progress, **user_objects)
    if user_objects:
        raise PrunekitError(
            f"run(RunConfig) takes no {', '.join(sorted(user_objects))}: those are for "
            "run(model_factory, train=loader, ...)"
        )
    spec = cfg if isinstance(cfg, RunSpec) else resolve(cfg)
    # Downstream trusts the spec: nothing below validates the config again.
    cfg, method = spec.config, spec.method
    if out is not None:
        check_out_dir(Path(out), spec.id, overwrite=overwrite)
    data = data or dataset_for(cfg)
    fingerprint = data_fingerprint(data)
    if out is not None:  # same flags on other data: another run
        check_same_data(Path(out), fingerprint, overwrite=overwrite)
    if spec.checks_model:  # e.g. N:M's m must divide every fan-in: fail before training
        shape = architecture(cfg, data)
        spec.check_model(create_model(shape["name"], **shape["kwargs"]))
    t_start = time.perf_counter()
    if dense is None:
        model, arch, dense_s = train_dense(cfg, data, progress=progress)
    else:
        model, dense_s = clone(dense[0]), dense[1]
        arch = architecture(cfg, data)
    reference = dense[0] if dense is not None else clone(model)
    input_shape = tuple(data.input_shape)
    accuracy_dense = accuracy(model, data.test.x, data.test.y)
    t0 = time.perf_counter()
    phase = sparsify(model, cfg, data, spec, progress=progress)
    sparsify_s = time.perf_counter() - t0
    if cfg.sparsity > 0:
        check_alive(model, method, cfg.sparsity)  # a dead layer: fail, naming it
    if not is_main():  # torchrun: rank 0 alone evaluates and saves (latency timed without a twin)
        return Run(model=model, result={"rank": rank(), "world_size": world_size()}, arch=arch)
    structure: dict[str, Any] = {}
    if spec.removes_units and cfg.shrink:
        model, structure = shrink_for_result(model, input_shape)
    metrics = evaluate(model, data, input_shape, cfg, reference=reference)
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": method.name,
        "granularity": method.granularity,
        "scope": method.scope,
        "schedule": method.schedule,
        "target_sparsity": cfg.sparsity,
        **metrics,
        **structure,
        # Which input pixels keep first-layer connections: drawn by the report.
        "input_connections": input_connections(
            model, input_shape, structure.get("architecture_original")
        ),
        "accuracy_dense": accuracy_dense,
        "seed": cfg.seed,
        "pruning_events": phase.history,
        "bn_recalibration": {
            "enabled": cfg.recalibrate_bn,
            "batchnorm_layers": len(batchnorm_layers(model)),
            "events": phase.bn_recalibrations,
            "examples": int(phase.ctx.data[0].shape[0]) if phase.ctx.data is not None else 0,
        },
        # What the training term measurably did (entropy objectives record it), if it reports.
        **(
            {"objective_report": phase.objective.report()}
            if hasattr(phase.objective, "report")
            else {}
        ),
        **({"criterion_report": phase.ctx.records} if phase.ctx.records else {}),
        "train_seconds": {
            "dense": dense_s,
            "sparsify": sparsify_s,
            "total": time.perf_counter() - t_start,
        },
        "versions": versions(),
        "config_hash": cfg.hash(),
        "data_fingerprint": fingerprint,
        "config": cfg.to_dict(),
    }
    if out is not None:  # the whole directory at once: model files + result + checksums
        result = RunDir(out).save(result, model, arch)
    return Run(model=model, result=result, arch=arch)


def dense_config(cfg: RunConfig) -> RunConfig:
    """The config of the dense baseline shared by every method of a (model, seed)."""
    return replace(cfg, method="magnitude", sparsity=0.0, finetune_epochs=0, method_args={})


def evaluate_saved(run_dir: str | Path, *, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Reload a saved run and measure it again on its dataset's test split."""
    saved_run = RunDir(run_dir)
    model = saved_run.model()
    saved = saved_run.result()
    cfg = saved_run.config(saved)
    data = saved_run.dataset(cfg, data_dir=data_dir)
    metrics = evaluate(model, data, tuple(data.input_shape), cfg)
    return {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": saved.get("method"),
        "target_sparsity": saved.get("target_sparsity"),
        **metrics,
    }

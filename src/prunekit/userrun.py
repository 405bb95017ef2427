"""The pipeline on the user's objects: ``prunekit.run(model_factory, train=loader, ...)``.

train dense (``epochs``) -> the method's phase through :class:`prunekit.Pruner`
(``finetune_epochs``) -> finalize -> evaluate -> save, like ``run(RunConfig)`` but on an
``nn.Module`` factory, the user's DataLoaders (any iterable of ``(x, y)`` batches) and
loss function. Training is SGD with momentum and a cosine learning rate, as in the zoo
pipeline; the calibration batch of data-driven criteria is the first
``calibration_batches`` batches of ``val`` (else ``train``). Classification accuracy is
measured with ``argmax`` over the model's output; ``loss`` is the mean loss_fn value.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .evaluation.cost import achieved_sparsity, eval_mode, layer_sparsity, macs, param_counts
from .progress import progress_bar
from .pruner import Pruner
from .registry import PrunekitError
from .storage.atomic import atomic_write_json
from .storage.outdir import check_out_dir
from .storage.record import RESULT_SCHEMA, Run, versions
from .storage.userio import save

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Rewind:
    """Puts the random generators of the loaders (``DataLoader(..., generator=g)``)
    back to their state when this was made: the pruning phase sees the batches in the
    order dense training saw them, whether the dense model was trained in this call or
    shared by a comparison's cells (a loader without a generator shuffles from torch's
    global one, which each run seeds)."""

    def __init__(self, loaders: Iterable[Batches | None]) -> None:
        gens = {id(g): g for g in (getattr(ld, "generator", None) for ld in loaders)}
        self.states = [(g, g.get_state()) for g in gens.values() if isinstance(g, torch.Generator)]

    def __call__(self) -> None:
        for g, state in self.states:
            g.set_state(state)


def _len(loader: Batches, name: str) -> int:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise PrunekitError(f"{name} must have a length (a DataLoader or a list)") from None
    if n == 0:
        raise PrunekitError(f"{name} is empty")
    return n


def _train(
    model: nn.Module,
    loader: Batches,
    steps: int,
    lr: float,
    loss_fn: LossFn,
    *,
    momentum: float,
    weight_decay: float,
    pruner_factory: Callable[[torch.optim.Optimizer], Pruner] | None,
    progress: bool,
    desc: str,
) -> Pruner | None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    # Before the scheduler: the Pruner may add the method's parameters as param groups.
    pruner = pruner_factory(opt) if pruner_factory is not None else None
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))
    )
    model.train()
    done = 0
    with progress_bar(progress, total=steps, desc=desc) as bar:
        while done < steps:
            for x, y in loader:
                if done == steps:
                    break
                if pruner is not None:
                    x, y = pruner.transform(x, y)
                loss = loss_fn(model(x), y)
                if pruner is not None:
                    loss = loss + pruner.penalty()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise PrunekitError(
                        f"loss became {value} at step {done} of {desc}; lower the "
                        "learning rate or the penalty strength"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if pruner is not None:
                    pruner.step()
                sched.step()
                done += 1
                bar.advance(loss=value)
    return pruner


@torch.no_grad()
def _evaluate(model: nn.Module, loader: Batches | None, loss_fn: LossFn) -> dict[str, float]:
    if loader is None:
        return {}
    correct = total = 0
    loss_sum = 0.0
    with eval_mode(model):
        for x, y in loader:
            out = model(x)
            loss_sum += float(loss_fn(out, y)) * len(y)
            if out.dim() == 2 and y.dim() == 1:
                correct += int((out.argmax(1) == y).sum())
            total += len(y)
    res = {"loss": loss_sum / total}
    if correct or total:
        res["accuracy"] = correct / total
    return res


def _calibration(loader: Batches, batches: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i, (x, y) in enumerate(loader):
        if i == batches:
            break
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def build(model_fn: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``model_fn()`` under ``torch.manual_seed(seed)``, checked to be an ``nn.Module``."""
    if not callable(model_fn):
        raise PrunekitError("run() takes a RunConfig or a callable that builds the model")
    torch.manual_seed(seed)
    model = model_fn()
    if not isinstance(model, nn.Module):
        raise PrunekitError(f"the model factory returned {type(model).__name__}, not an nn.Module")
    return model


def train_dense(
    model_fn: Callable[[], nn.Module],
    train: Batches,
    *,
    loss_fn: LossFn = F.cross_entropy,
    epochs: int = 1,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, float]:
    """Build the model (seeded) and train it densely; returns (model, seconds)."""
    n_train = _len(train, "train")
    model = build(model_fn, seed)
    t0 = time.perf_counter()
    _train(
        model,
        train,
        epochs * n_train,
        lr,
        loss_fn,
        momentum=momentum,
        weight_decay=weight_decay,
        pruner_factory=None,
        progress=progress,
        desc="dense",
    )
    return model, time.perf_counter() - t0


def run_model(
    model_fn: Callable[[], nn.Module],
    *,
    train: Batches,
    val: Batches | None = None,
    test: Batches | None = None,
    loss_fn: LossFn = F.cross_entropy,
    method: str = "magnitude",
    sparsity: float = 0.5,
    epochs: int = 1,
    finetune_epochs: int = 1,
    lr: float = 0.05,
    finetune_lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    calibration_batches: int = 4,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    dense: tuple[nn.Module, float] | None = None,
    **method_options: Any,
) -> Run:
    """Run the pipeline on a user's model factory and DataLoaders; see the module doc.
    ``method_options`` go to the method (``lam=...``, ``granularity="neuron"`` ...).
    ``dense`` = (model trained densely by :func:`train_dense` with the same budget, its
    seconds): a comparison trains it once per seed; it is copied, not changed."""
    if not callable(model_fn):
        raise PrunekitError("run() takes a RunConfig or a callable that builds the model")
    n_train = _len(train, "train")
    if out is not None:
        check_out_dir(Path(out), None, overwrite=overwrite)
    rewind = Rewind([train, val, test])
    t0 = time.perf_counter()
    if dense is None:
        model, dense_s = train_dense(
            model_fn,
            train,
            loss_fn=loss_fn,
            epochs=epochs,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            seed=seed,
            progress=progress,
        )
    else:
        model, dense_s = copy.deepcopy(dense[0]).train(), dense[1]
    dense_metrics = _evaluate(model, test, loss_fn)
    # Reseeded: the phase (loader shuffling, noise draws) is the same whether the dense
    # model was trained just now or shared by a comparison's cells.
    torch.manual_seed(seed + 1)
    rewind()
    calib = _calibration(val if val is not None else train, calibration_batches)
    t1 = time.perf_counter()
    steps = finetune_epochs * n_train
    pruner = _train(
        model,
        train,
        steps,
        finetune_lr or 0.1 * lr,
        loss_fn,
        momentum=momentum,
        weight_decay=weight_decay,
        pruner_factory=lambda opt: Pruner(
            model,
            method,
            sparsity,
            steps,
            optimizer=opt,
            data=calib,
            seed=seed,
            allow_short=True,
            **method_options,
        ),
        progress=progress,
        desc=f"{method} {sparsity:g}",
    )
    assert pruner is not None
    pruner.finalize()
    sparsify_s = time.perf_counter() - t1
    total, nonzero = param_counts(model)
    # One real sample of the user's data (token ids too), not a random float stand-in.
    dense_macs, eff_macs = macs(model, example_inputs=calib[0][:1])
    test_m, val_m = _evaluate(model, test, loss_fn), _evaluate(model, val, loss_fn)
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "model": getattr(model_fn, "__qualname__", type(model).__name__),
        "dataset": "user",
        "method": pruner.method.name,
        "granularity": pruner.method.granularity,
        "scope": pruner.method.scope,
        "schedule": pruner.method.schedule,
        "target_sparsity": sparsity,
        "achieved_sparsity": achieved_sparsity(model),
        "accuracy": test_m.get("accuracy"),
        "loss": test_m.get("loss"),
        "val_accuracy": val_m.get("accuracy"),
        "accuracy_dense": dense_metrics.get("accuracy"),
        "params_total": total,
        "params_nonzero": nonzero,
        "macs_dense": dense_macs,
        "macs_effective": eff_macs,
        "layers": layer_sparsity(model),
        "seed": seed,
        "pruning_events": pruner.history,
        "train_seconds": {
            "dense": dense_s,
            "sparsify": sparsify_s,
            "total": time.perf_counter() - t0,
        },
        "versions": versions(),
        "config": {
            "epochs": epochs,
            "finetune_epochs": finetune_epochs,
            "lr": lr,
            "finetune_lr": finetune_lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "method_options": method_options,
        },
    }
    if out is not None:
        save(model, out)
        atomic_write_json(Path(out) / "result.json", result)
    return Run(model=model.eval(), result=result, arch={"class": type(model).__qualname__})

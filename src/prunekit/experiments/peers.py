"""Peers: other libraries' pruners as rows of the comparison, on the same terms.

Each peer gets the comparison's dense model (a copy), prunes it once with the other
library's own function, fine-tunes for the same ``finetune_epochs`` with the same
optimizer settings and data order as prunekit's methods (``settings_for(cfg,
finetune=True)``, generator seeded ``seed + 1``), and is measured by the same
``prunekit.pipeline.evaluate``.

- ``torch-l1``: ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured,
  amount=sparsity)`` over the weights of every Linear/Conv layer (head included, as
  prunekit's weight granularity does); masks are torch's own, baked with ``prune.remove``.
- ``tp-magnitude``: Torch-Pruning's ``MagnitudePruner`` with ``MagnitudeImportance(p=1)``
  (L1 norm of each unit's group), ``pruning_ratio = sparsity`` per layer, the classifier
  head ignored. The model is physically smaller, so cost figures that would otherwise
  compare against the *pruned* shape are restated against the dense model:
  ``achieved_sparsity = 1 - sum(weights kept) / sum(dense weights)`` over Linear/Conv
  weights, ``macs_dense`` and ``params_total_original`` from the dense model, and each
  layer's ``sparsity = 1 - params / dense params``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._optional import import_torch_pruning
from ..config import RunConfig
from ..data import Dataset
from ..evaluation import accuracy, summary
from ..evaluation.cost import sparsity_against
from ..pipeline import RESULT_SCHEMA, evaluate, settings_for, versions
from ..pruning.masks import clone, prunable_modules
from ..surgery.shrink import units
from ..training import fit, steps_per_epoch
from ..visualize import input_connections


def _torch_l1(model: nn.Module, sparsity: float, input_shape: tuple[int, ...]) -> dict[str, Any]:
    from torch.nn.utils import prune

    modules = prunable_modules(model, include_last=True)
    prune.global_unstructured(
        [(m, "weight") for m in modules.values()],
        pruning_method=prune.L1Unstructured,
        amount=float(sparsity),
    )
    return {
        "library": f"torch {torch.__version__}",
        "scope": "global",
        "call": "torch.nn.utils.prune.global_unstructured(L1Unstructured, amount=sparsity)",
    }


def _tp_magnitude(
    model: nn.Module, sparsity: float, input_shape: tuple[int, ...]
) -> dict[str, Any]:
    tp = import_torch_pruning("the Torch-Pruning peer baseline")

    linear_or_conv = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    pruner = tp.pruner.MagnitudePruner(
        model,
        torch.zeros(1, *input_shape),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=float(sparsity),
        ignored_layers=linear_or_conv[-1:],
    )
    pruner.step()
    return {
        "library": f"torch-pruning {tp.__version__}",
        "scope": "layer",
        "call": "torch_pruning.pruner.MagnitudePruner(MagnitudeImportance(p=1), "
        "pruning_ratio=sparsity, ignored_layers=[head])",
    }


PEERS: dict[str, Callable[[nn.Module, float, tuple[int, ...]], dict[str, Any]]] = {
    "torch-l1": _torch_l1,
    "tp-magnitude": _tp_magnitude,
}


def _finalize_torch(model: nn.Module) -> None:
    from torch.nn.utils import prune

    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)


def _against_dense(metrics: dict[str, Any], dense: dict[str, Any]) -> None:
    """Restate cost figures of a (maybe physically smaller) model against the dense one."""
    layers = metrics["layers"]
    metrics["achieved_sparsity"] = sparsity_against(layers, dense["layers"])
    metrics["macs_dense"] = dense["macs_dense"]
    metrics["params_total_original"] = dense["params_total"]
    for name, layer in layers.items():
        orig = dense["layers"].get(name, {}).get("params")
        if orig:
            layer["params_original"] = orig
            layer["sparsity"] = 1.0 - layer["nonzero"] / orig


def run_peer(
    name: str, cfg: RunConfig, data: Dataset, dense: tuple[nn.Module, float]
) -> tuple[dict[str, Any], nn.Module]:
    """Prune a copy of ``dense[0]`` with peer ``name``, fine-tune, evaluate. Returns
    (result dict with the keys of prunekit's result.json plus ``peer``: library and
    call, the pruned model)."""
    t_start = time.perf_counter()
    input_shape = tuple(data.input_shape)
    model = clone(dense[0])
    dense_summary = summary(dense[0], input_shape)
    accuracy_dense = accuracy(model, data.test.x, data.test.y)
    t0 = time.perf_counter()
    info = PEERS[name](model, cfg.sparsity, input_shape)
    settings = settings_for(cfg, finetune=True)
    fit(
        model,
        data.train,
        steps=cfg.finetune_epochs * steps_per_epoch(len(data.train), settings.batch_size),
        settings=settings,
        generator=torch.Generator().manual_seed(cfg.seed + 1),
        desc=name,
    )
    _finalize_torch(model)
    sparsify_s = time.perf_counter() - t0
    metrics = evaluate(model, data, input_shape, cfg, reference=dense[0])
    _against_dense(metrics, dense_summary)
    return {
        "schema": RESULT_SCHEMA,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": name,
        "granularity": "weight" if name == "torch-l1" else "neuron",
        "scope": info["scope"],
        "schedule": "oneshot",
        "target_sparsity": cfg.sparsity,
        **metrics,
        "input_connections": input_connections(model, input_shape, units(dense[0])),
        "accuracy_dense": accuracy_dense,
        "seed": cfg.seed,
        "peer": {"library": info["library"], "call": info["call"]},
        "train_seconds": {
            "dense": dense[1],
            "sparsify": sparsify_s,
            "total": time.perf_counter() - t_start,
        },
        "versions": versions(),
        "config_hash": cfg.hash(),
        "config": cfg.to_dict(),
    }, model

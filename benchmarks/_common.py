"""Shared by the benchmark scripts (run as ``python benchmarks/X.py``, so this directory
is on ``sys.path``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit import RunConfig
from prunekit.data import Dataset
from prunekit.evaluation import accuracy
from prunekit.evaluation.robustness import robustness
from prunekit.pipeline import dataset_for, dense_config, train_dense
from prunekit.pruning.masks import clone


def dense_baseline(base: RunConfig) -> tuple[Dataset, nn.Module, float, dict[str, Any]]:
    """The dataset of ``base``, its dense model trained once (shared by every method of a
    (model, seed)), the training seconds, and the dense row's metrics: test accuracy,
    sparsity 0 and accuracy under every input corruption."""
    data = dataset_for(base)
    model, _, seconds = train_dense(dense_config(base), data)
    metrics = {
        "accuracy": accuracy(model, data.test.x, data.test.y),
        "achieved_sparsity": 0.0,
        **robustness(model, data.test.x, data.test.y, seed=base.noise_eval_seed),
    }
    return data, model, seconds, metrics


def tp_uniform(model: nn.Module, ratio: float, shape: tuple[int, ...]) -> nn.Module:
    """Torch-Pruning's uniform width pruning, the peer of the structured benchmarks: a
    copy of ``model`` with ``ratio`` of every group's channels removed by
    ``MagnitudePruner`` (L1 magnitude), the classifier head kept."""
    import torch_pruning as tp

    m = clone(model)
    head = [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(
        m,
        torch.rand(1, *shape),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[head],
    )
    pruner.step()
    return m

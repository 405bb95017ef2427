"""Shared by the benchmark scripts (run as ``python benchmarks/X.py``, so this directory
is on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit import RunConfig
from prunekit.data import Dataset
from prunekit.evaluation import accuracy
from prunekit.evaluation.robustness import robustness
from prunekit.pipeline import dataset_for, dense_config, train_dense
from prunekit.pruning.masks import clone

FASHION = "/usr/share/datasets/fashion-mnist"


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


def latency_dense(
    model: str,
    seed: int,
    *,
    latency_repeats: int = 3,
    test_limit: int = 2000,
    cache: Path | None = None,
    **budget: Any,
) -> tuple[RunConfig, Dataset, nn.Module, float]:
    """The run config of the latency benchmarks (Fashion-MNIST, ``l1-filter`` at sparsity
    0, latency at batch 64, no corruption metrics, ``budget``: ``limit``, ``epochs``,
    ``finetune_epochs``, ``batch_size``), its dataset, its dense model (trained by
    ``train_dense`` on that config, in eval mode) and the training seconds. With
    ``cache``, the model is stored as ``cache/<model>-dense<seed>.pt`` and loaded from
    there when present (seconds NaN: not trained here)."""
    cfg = RunConfig(
        model=model,
        dataset="fashion-mnist",
        method="l1-filter",
        sparsity=0.0,
        seed=seed,
        test_limit=test_limit,
        latency_repeats=latency_repeats,
        latency_batch_sizes=[64],
        noise_sigmas=[],
        noise_densities=[],
        data_dir=FASHION,
        **budget,
    )
    data = dataset_for(cfg)
    path = cache / f"{model}-dense{seed}.pt" if cache is not None else None
    if path is not None and path.exists():  # the same seeded dense model, trained once
        dense, seconds = torch.load(path, weights_only=False), float("nan")
    else:
        dense, _, seconds = train_dense(cfg, data)
        if path is not None:
            torch.save(dense, path)
    return cfg, data, dense.eval(), seconds


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

"""Test setup: CPU only, deterministic seeds, two threads, no network."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


FASHION_DIR = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION_DIR),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


def small_run_config(**kw: object):
    """A tiny synthetic LeNet-300 run: 1 dense + 2 sparsify epochs on 600 examples,
    no robustness levels, one latency repeat. Keyword arguments override."""
    from prunekit import RunConfig

    base: dict = dict(
        model="lenet300",
        dataset="synthetic",
        sparsity=0.9,
        epochs=1,
        finetune_epochs=2,
        latency_repeats=1,
        noise_sigmas=[],
        noise_densities=[],
        limit=600,
    )
    base.update(kw)
    return RunConfig(**base)

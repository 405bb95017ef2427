"""Test setup: CPU only, deterministic seeds, two threads, no network."""

from __future__ import annotations

import os
import random

# Before torch starts its OpenMP pool: spinning waits stall 2-thread ops by orders of
# magnitude whenever another process holds a core (measured 25x on a resnet20 deploy).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

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


# A few seconds per cell: sklearn's bundled 8x8 digits, one epoch, tiny evaluation.
TINY_COMPARISON: dict = {
    "name": "tiny",
    "models": ["lenet300"],
    "dataset": "digits",
    "methods": ["magnitude", "random"],
    # Not 0.9: one epoch on 400 digits leaves fc2's weights the smallest, and global
    # magnitude at 0.9 empties it -- a collapsed run, refused since issue 14.
    "sparsities": [0.5, 0.7],
    "seeds": [0],
    "budget": {"epochs": 1, "finetune_epochs": 1, "batch_size": 64},
    "data": {"limit": 400, "test_limit": 100},
    "evaluation": {
        "latency_repeats": 1,
        "latency_batch_sizes": [1],
        "noise_sigmas": [0.2],
        "noise_densities": [],
    },
}


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``prunekit ARGS`` in this process, no interpreter start-up: (exit code, stdout,
    stderr)."""
    from prunekit.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err

"""L0 runs of ``prunekit.run`` (Fashion-MNIST, LeNet-300-100): test accuracy, achieved
sparsity and where the gates stood at the pruning event, for comparing two versions of
the library (e.g. the gates stepped by the objective's own Adam vs. by the training
loop's optimizer). Run it once per version (``PYTHONPATH`` picks the source tree) with
the same arguments; each run appends one table to ``--out``.

    PYTHONPATH=src python benchmarks/l0_gate_optimizer.py --label after \
        [--seeds 0 1 2] [--limit 12000] [--out benchmarks/results/l0_gate_optimizer.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch

import prunekit
from prunekit import RunConfig

DATA = os.environ.get("PRUNEKIT_DATA", "/usr/share/datasets/fashion-mnist")
CASES = [("l0", 0.9), ("l0", 0.98), ("l0-neuron", 0.5)]


def one(method: str, sparsity: float, seed: int, limit: int) -> dict:
    cfg = RunConfig(
        model="lenet300",
        dataset="fashion-mnist",
        data_dir=DATA,
        method=method,
        sparsity=sparsity,
        epochs=2,
        finetune_epochs=4,
        seed=seed,
        limit=limit,
        latency_repeats=1,
        noise_sigmas=[],
        noise_densities=[],
    )
    r = prunekit.run(cfg, progress=False).result
    rep = r.get("objective_report", {})
    return {
        "acc": 100 * r["accuracy"],
        "dense": 100 * r["accuracy_dense"],
        "achieved": r["achieved_sparsity"],
        "kept_expected": rep.get("density_expected", float("nan")),
        "open_test": rep.get("open_fraction_test", float("nan")),
    }


def ms(xs: list[float]) -> str:
    return (
        f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"
    )


def fmt(xs: Iterable[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--limit", type=int, default=12000)
    ap.add_argument("--out", default="benchmarks/results/l0_gate_optimizer.md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    rows = []
    for method, s in CASES:
        res = [one(method, s, seed, a.limit) for seed in a.seeds]
        rows.append(
            f"| {method} | {s} | {ms([r['dense'] for r in res])} | {ms([r['acc'] for r in res])} "
            f"| {min(r['achieved'] for r in res):.4f}-{max(r['achieved'] for r in res):.4f} "
            f"| {fmt(r['kept_expected'] for r in res)} | {fmt(r['open_test'] for r in res)} |"
        )
        print(rows[-1], flush=True)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        sha = "?"
    src = Path(prunekit.__file__).parent
    lines = [
        f"## {a.label}",
        "",
        f"Command: `PYTHONPATH={os.environ.get('PYTHONPATH', '')} python "
        f"benchmarks/l0_gate_optimizer.py {' '.join(sys.argv[1:])}`  ",
        f"prunekit from {src} (git {sha}); {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} "
        f"UTC, took {time.time() - t0:.0f} s; torch {torch.__version__}, Python "
        f"{platform.python_version()}, 1 thread.",
        "",
        f"lenet300 on Fashion-MNIST, first {a.limit} training images, 2 dense + 4 sparsify "
        f"epochs, library defaults otherwise; test accuracy in % (10000 images), mean ± std "
        f"over seeds {a.seeds}; the gates' expected kept fraction and test-time open "
        "fraction at the pruning event, per seed.",
        "",
        "| method | sparsity | dense acc | pruned acc | achieved | kept (expected) | open (z_test) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    out = Path(a.out)
    if not out.exists():
        out.write_text(
            "# L0 gate logits: the objective's own Adam vs. the training loop's optimizer\n\n"
        )
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

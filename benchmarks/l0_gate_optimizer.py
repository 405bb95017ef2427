"""L0 runs of ``prunekit.run`` (Fashion-MNIST, LeNet-300-100): test accuracy, achieved
sparsity and where the gates stood at the pruning event, for comparing two versions of
the library (e.g. the gates stepped by the objective's own Adam vs. by the training
loop's optimizer). Run it once per version (``PYTHONPATH`` picks the source tree) with
the same arguments; each run appends one table to ``--out``.

    PYTHONPATH=src python benchmarks/l0_gate_optimizer.py --label after \
        [--seeds 0 1 2] [--limit 12000] [--out benchmarks/results/l0_gate_optimizer.md]
    PYTHONPATH=src python benchmarks/l0_gate_optimizer.py --label "step cost" --step-cost 200
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
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

import prunekit
from prunekit import RunConfig
from prunekit.pruning.objectives import OBJECTIVES
from prunekit.pruning.step import target_modules

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


def l0_step(kind: str, granularity: str, batch: int = 128) -> Callable[[], None]:
    """One LeNet-300-100 training step with L0 gates. ``own-adam``: the logits stepped by
    a fused Adam of their own (the former path; the gradient handed over unnormalized);
    ``loop-optimizer``: the logits a group of the loop's SGD, Adam-normalized gradient."""
    torch.manual_seed(0)
    model = prunekit.create_model("lenet300")
    obj = OBJECTIVES.get("l0")(
        granularity=granularity, target_sparsity=0.9, window_steps=10**6, check_every=0
    )
    obj.attach(model, target_modules(model, granularity))
    groups = [{"params": list(model.parameters())}]
    own = None
    if kind == "own-adam":
        obj._normalize_grads = lambda: None  # type: ignore[method-assign]
        own = torch.optim.Adam(list(obj.log_alpha.values()), lr=obj.gate_lr, fused=True)
    else:
        groups += obj.param_groups()
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        p = obj.penalty(model)
        loss = loss + p if p is not None else loss
        opt.zero_grad(set_to_none=True)
        if own is not None:
            own.zero_grad(set_to_none=True)
        loss.backward()
        obj.before_step(model)
        opt.step()
        if own is not None:
            own.step()
        obj.after_step(model, 0.01)

    return step


def step_cost(repeats: int) -> list[str]:
    """Median ms per step of the two paths, interleaved in this process, 1 thread."""
    rows = []
    for gran in ("weight", "neuron"):
        steps = {k: l0_step(k, gran) for k in ("own-adam", "loop-optimizer")}
        for _ in range(5):
            for f in steps.values():
                f()
        times: dict[str, list[float]] = {k: [] for k in steps}
        ratios = []
        for _ in range(repeats):
            now = {}
            for k, f in steps.items():
                t = time.perf_counter()
                f()
                now[k] = time.perf_counter() - t
                times[k].append(now[k])
            ratios.append(now["loop-optimizer"] / now["own-adam"])
        q = statistics.quantiles(ratios, n=4)
        rows.append(
            f"| {gran} gates | {1e3 * statistics.median(times['own-adam']):.2f} | "
            f"{1e3 * statistics.median(times['loop-optimizer']):.2f} | "
            f"{statistics.median(ratios):.3f} ({q[0]:.3f}-{q[2]:.3f}) |"
        )
        print(rows[-1], flush=True)
    return rows


def fmt(xs: Iterable[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--limit", type=int, default=12000)
    ap.add_argument("--out", default="benchmarks/results/l0_gate_optimizer.md")
    ap.add_argument("--step-cost", type=int, metavar="REPEATS", default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    if a.step_cost:
        rows = step_cost(a.step_cost)
        lines = [
            f"## {a.label}",
            "",
            f"Command: `PYTHONPATH={os.environ.get('PYTHONPATH', '')} python "
            f"benchmarks/l0_gate_optimizer.py {' '.join(sys.argv[1:])}`  ",
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, torch "
            f"{torch.__version__}, 1 thread, 2 cores shared with other jobs (load average "
            f"at the end: {' / '.join(f'{v:.1f}' for v in os.getloadavg())}).",
            "",
            "One LeNet-300-100 training step (batch 128, SGD momentum 0.9; forward, loss + "
            "L0 penalty, backward, gate update, optimizer step), the two gate paths "
            f"interleaved in one process, {a.step_cost} repeats: median ms, and the median "
            "(25-75 %) of the per-repeat ratio loop-optimizer / own-adam.",
            "",
            "| gates | own fused Adam (ms) | loop's optimizer (ms) | ratio |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
        with Path(a.out).open("a") as f:
            f.write("\n".join(lines) + "\n")
        return
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

"""L0 training-step cost vs a dense step, and how low any PyTorch implementation can go.

Issue 3's target: an L0-gated training step <= 1.5x a dense step. Per-weight gates add
work proportional to the number of WEIGHTS (sample the gates, multiply, backward to the
logits, the penalty, the gates' Adam), while a dense step's work grows with weights x
batch. So the ratio falls with the batch size, and it is worst on LeNet-300-100 (all
weights, no convolution to amortize them). This script measures, same process,
interleaved, medians:

1. full SGD steps (forward, loss + penalty, backward, optimizer, the objective's
   ``after_step``) of dense, masked (90 %), l0 weight gates and l0 neuron gates, for
   batch 64 / 128 / 256 / 512 at 1 and 2 threads;
2. the floor: forward + backward only (no optimizer, no penalty) of LeNet-300-100's
   three layers, dense vs prunekit's fused gate vs the same gate formula compiled by
   ``torch.compile`` (inductor fuses it into one loop forward and one backward) - the
   least a PyTorch implementation of per-weight hard-concrete gates costs here;
3. what one elementwise pass over fc1's 235,200 gates costs (memory-bound).

    python benchmarks/l0_step.py [--repeats 100] [--no-compile] [--out FILE]
"""

from __future__ import annotations

import os

# A spinning OpenMP pool stalls 2-thread steps whenever another process holds a core
# (measured 164 ms instead of ~1.5 ms for a dense step); passive waiting avoids that. It
# must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from sparse_optimization import STEP_VARIANTS, step_fn  # the same step as that benchmark's

from prunekit.pruning.objectives.hard_concrete import BETA, GAMMA, ZETA
from prunekit.pruning.objectives.l0_autograd import _GatedWeight

BATCHES = (64, 128, 256, 512)


def timed(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 10) -> dict[str, float]:
    """Median ms per call of each function, interleaved."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def full_steps(repeats: int) -> list[str]:
    variants = ("dense", "masked 90 %", "l0 weight gates", "l0 neuron gates")
    assert set(variants) <= set(STEP_VARIANTS)
    lines = [
        "## 1. Full training step vs dense (LeNet-300-100)",
        "",
        "| threads | batch | dense ms | " + " | ".join(variants[1:]) + " |",
        "|---|---|---|" + "---|" * (len(variants) - 1),
    ]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in BATCHES:
            steps = {v: step_fn("lenet300", *STEP_VARIANTS[v], batch) for v in variants}
            ms = timed(steps, repeats)
            d = ms["dense"]
            cells = [f"{ms[v]:.2f} ms ({ms[v] / d:.2f}x)" for v in variants[1:]]
            lines.append(f"| {threads} | {batch} | {d:.2f} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    return lines


def gate_formula(w: torch.Tensor, la: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid((n + la) / BETA)
    return w * torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def floor(repeats: int, compile_gate: bool) -> list[str]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    shapes = [(300, 784), (100, 300), (10, 100)]
    ws = [torch.randn(s).mul_(0.05).requires_grad_() for s in shapes]
    las = [torch.full(s, 2.94, requires_grad=True) for s in shapes]
    noise = [torch.rand(s).clamp_(1e-6, 1 - 1e-6).logit_() for s in shapes]
    x = torch.rand(128, 784)

    def fwd_bwd(gate: Callable | None) -> Callable[[], None]:
        def f() -> None:
            for t in ws + las:
                t.grad = None
            h = x
            for i, w in enumerate(ws):
                weight = w if gate is None else gate(w, las[i], noise[i])
                h = F.linear(h, weight)
                h = F.relu(h) if i < 2 else h
            h.square().mean().backward()

        return f

    fused = lambda w, la, n: _GatedWeight.apply(w, la, n, None, BETA, GAMMA, ZETA)  # noqa: E731
    fns = {
        "dense": fwd_bwd(None),
        "composed ops": fwd_bwd(gate_formula),
        "prunekit fused": fwd_bwd(fused),
    }
    compile_s = None
    if compile_gate:
        compiled = torch.compile(gate_formula, dynamic=False)
        t0 = time.perf_counter()
        fwd_bwd(compiled)()
        compile_s = time.perf_counter() - t0
        fns["torch.compile (inductor)"] = fwd_bwd(compiled)
    ms = timed(fns, repeats)
    d = ms["dense"]
    lines = [
        "## 2. The floor: forward + backward only, batch 128, 1 thread",
        "",
        "| variant | ms | vs dense | extra ms over dense |",
        "|---|---|---|---|",
        *[f"| {k} | {v:.3f} | {v / d:.2f}x | {v - d:+.3f} |" for k, v in ms.items()],
    ]
    if compile_s is not None:
        lines += ["", f"torch.compile's first call (compilation) took {compile_s:.1f} s."]
    a, b = torch.rand(300, 784), torch.rand(300, 784)
    out = torch.empty_like(a)
    passes = timed(
        {
            "in place, scalar (t.mul_(c))": lambda: out.mul_(1.0),
            "two inputs (torch.mul(a, b, out=))": lambda: torch.mul(a, b, out=out),
            "sigmoid in place": lambda: out.sigmoid_(),
        },
        repeats * 3,
    )
    lines += [
        "",
        "## 3. One elementwise pass over fc1's 235,200 gates, 1 thread",
        "",
        "| pass | us |",
        "|---|---|",
        *[f"| {k} | {1e3 * v:.1f} |" for k, v in passes.items()],
    ]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile floor")
    p.add_argument("--out", default=None, help="write the Markdown report here")
    args = p.parse_args()
    started = time.time()
    lines = full_steps(args.repeats) + [""] + floor(args.repeats, not args.no_compile)
    load = os.getloadavg()
    head = [
        "# L0 training step vs dense step",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC (took "
        f"{time.time() - started:.0f} s); torch {torch.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. Medians of {args.repeats} "
        "interleaved repeats.",
        "",
    ]
    text = "\n".join(head + lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

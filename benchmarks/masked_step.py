"""Masked fine-tuning step vs dense step, same process, interleaved, medians.

A masked step (torch.nn.utils.prune convention: weight = weight_orig * weight_mask,
recomputed by a forward pre-hook) costs one extra elementwise product per layer
forward and its backward. Target: masked <= 1.1x dense.

    python benchmarks/masked_step.py [--repeats 60] [--batch-size 128] [--out FILE]
"""

from __future__ import annotations

import os

# Passive OpenMP waiting: a spinning pool stalls 2-thread steps whenever another
# process holds a core. Set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from prunekit import create_model, prune


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(name: str, batch: int, repeats: int, threads: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dense = create_model(name)
    torch.manual_seed(0)
    masked = create_model(name)
    prune(masked, "magnitude", 0.9)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    steps = {"dense": step_fn(dense, x, y), "masked": step_fn(masked, x, y)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(5):
        for s in steps.values():
            s()
    for _ in range(repeats):
        for k, s in steps.items():  # interleaved: both see the same machine state
            t0 = time.perf_counter()
            s()
            times[k].append(time.perf_counter() - t0)
    return statistics.median(times["dense"]) * 1e3, statistics.median(times["masked"]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=None, help="also write the Markdown report here")
    args = ap.parse_args()
    load = os.getloadavg()
    lines = [
        "# Masked fine-tuning step vs dense step",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; torch "
        f"{torch.__version__}, batch {args.batch_size}, {args.repeats} interleaved repeats, "
        f"medians (ms per training step); load average at the start {load[0]:.1f}.",
        "",
        "| model | threads | dense ms | masked (90 %) ms | masked / dense |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name in ("lenet300", "lenet5"):
        for threads in (2, 1):
            d, m = measure(name, args.batch_size, args.repeats, threads)
            lines.append(f"| {name} | {threads} | {d:.3f} | {m:.3f} | {m / d:.3f} |")
            print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Cost of ``prunekit.Pruner`` in a user's loop vs the same loop without it.

LeNet-300-100, batch 128, SGD with momentum; the Pruner runs ``magnitude`` at 90 %
(masks in place from step 0) with its default masking (``rezero``: plain weights, pruned
entries zeroed again after each optimizer step) and with the ``torch.nn.utils.prune``
hooks (``rezero=False``: weight = weight_orig * weight_mask in every forward/backward).
Each step is the whole user loop body: transform, forward, penalty, backward, optimizer
step, ``pruner.step()``. The three loops run interleaved in one process (each repeat
times one step of each); reported: the median step time, and the median and 25-75 %
range of the per-repeat ratio (a loop's step / the plain step of the same repeat, so
that load drift on a shared machine cancels). Target: <= 1.1x.

    python benchmarks/pruner_step.py [--repeats 200] [--out FILE]
"""

from __future__ import annotations

import os

# Passive OpenMP waiting: a spinning pool stalls 2-thread steps whenever another
# process holds a core. Set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prunekit import Pruner, create_model  # noqa: E402

BATCH = 128


def loop(kind: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model("lenet300")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    if kind == "plain":

        def step() -> None:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step
    pruner = Pruner(
        model, "magnitude", 0.9, steps=steps, optimizer=opt, rezero=kind == "pruner-rezero"
    )

    def pruned_step() -> None:
        xb, yb = pruner.transform(x, y)
        loss = F.cross_entropy(model(xb), yb) + pruner.penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        pruner.step()

    return pruned_step


def quartiles(v: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(v, n=4)
    return q[0], statistics.median(v), q[2]


def measure(threads: int, repeats: int) -> dict[str, list[float]]:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(BATCH, 1, 28, 28, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    kinds = ("plain", "pruner-rezero", "pruner-hooks")
    steps = {k: loop(k, x, y, repeats + 20) for k in kinds}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(10):
        for s in steps.values():
            s()
    for _ in range(repeats):
        for k, s in steps.items():  # interleaved: all see the same machine state
            t0 = time.perf_counter()
            s()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--out", default=None, help="also write the Markdown report here")
    args = ap.parse_args()
    load = os.getloadavg()
    lines = [
        "# Pruner step in a user's loop vs the plain loop",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; torch "
        f"{torch.__version__}; LeNet-300-100, batch {BATCH}, SGD momentum 0.9, "
        f"magnitude 90 %; {args.repeats} interleaved repeats; load average at the start "
        f"{load[0]:.1f}. ms per step: median [25 %, 75 %]; / plain: median [25 %, 75 %] of "
        "the per-repeat ratio to the plain step of the same repeat.",
        "",
        "| threads | loop | ms per step | / plain (paired) |",
        "|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for threads in (1, 2):
        times = measure(threads, args.repeats)
        for kind, v in times.items():
            q25, qm, q75 = quartiles(v)
            r25, rm, r75 = quartiles([a / b for a, b in zip(v, times["plain"], strict=True)])
            ratio = "1" if kind == "plain" else f"{rm:.3f} [{r25:.3f}, {r75:.3f}]"
            lines.append(f"| {threads} | {kind} | {qm:.3f} [{q25:.3f}, {q75:.3f}] | {ratio} |")
            print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

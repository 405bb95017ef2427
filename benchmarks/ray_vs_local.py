"""A small comparison grid: the local backend vs Ray with 2 workers, same process, interleaved.

Three candidates run the same grid into fresh output directories, interleaved round by
round so all see the same machine state: the local backend with torch's default thread
count, the local backend with 1 thread, and Ray with 2 workers of 1 thread. Round 0 is
cold for Ray (its workers start); later rounds are warm, and their medians are compared.
Ray's start-up (``ray.init`` of a local 2-CPU instance) is timed apart: it is paid once per
sweep, not per cell. Writes ``benchmarks/results/ray_vs_local.md``.

    python benchmarks/ray_vs_local.py [--rounds 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from prunekit.experiments import compare, read_rows
from prunekit.experiments.plan import config_from_dict, plan


def grid(epochs: int) -> dict:
    return {
        "name": "bench-ray",
        "models": ["lenet300"],
        "dataset": "digits",
        "methods": ["magnitude", "random", "gmp"],
        "sparsities": [0.5, 0.9],
        "seeds": [0],
        "budget": {"epochs": epochs, "finetune_epochs": epochs, "batch_size": 64},
        "data": {},
        "evaluation": {
            "latency_repeats": 3,
            "latency_batch_sizes": [1, 64],
            "noise_sigmas": [0.2],
            "noise_densities": [0.1],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "ray_vs_local.md"
    )
    args = ap.parse_args()

    import ray

    from prunekit.experiments.ray_backend import RayBackend

    cfg = config_from_dict(grid(args.epochs))
    cells = len(plan(cfg))
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    init_s = time.perf_counter() - t0
    backend = RayBackend(cpus_per_run=1)  # joins the instance: 2 tasks at a time
    candidates = {
        f"local, {threads} torch threads (default)": (None, threads),
        "local, 1 torch thread": (None, 1),
        "ray, 2 workers x 1 thread": (backend, threads),
    }
    walls: dict[str, list[float]] = {k: [] for k in candidates}
    accuracy: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, (name, (engine, n_threads)) in enumerate(candidates.items()):
                torch.set_num_threads(n_threads)
                out = Path(tmp) / f"{i}-{r}"
                t0 = time.perf_counter()
                outcome = compare(cfg, out, config_yaml="bench", progress=False, backend=engine)
                walls[name].append(time.perf_counter() - t0)
                assert outcome.failed == 0 and outcome.ran == cells
                accuracy[name] = [row["accuracy"] for row in read_rows(out)]
                print(f"round {r} {name}: {walls[name][-1]:.1f} s", flush=True)
    torch.set_num_threads(threads)
    ray.shutdown()
    warm = {k: statistics.median(v[1:] or v) for k, v in walls.items()}
    names = list(candidates)
    ray_name, one_name, default_name = names[2], names[1], names[0]
    same = len({tuple(v) for v in accuracy.values()}) == 1
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "# Comparison grid: local backend vs Ray (2 workers)",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores ({platform.machine()}), shared with other jobs "
        f"(load average at the end: {os.getloadavg()[0]:.1f}); torch {torch.__version__}, "
        f"Ray {ray.__version__}",
        f"- grid: lenet300 on digits, {cells} cells (dense + magnitude, random, gmp x 2 "
        f"sparsities, 1 seed), {args.epochs} dense + {args.epochs} fine-tune epochs per cell; "
        f"{args.rounds} interleaved rounds. Round 0 is cold for Ray (worker processes start "
        "and import torch); later rounds reuse the workers (their median is 'warm').",
        "",
        "| backend | round 0 (s) | warm median (s) | all rounds (s) |",
        "|---|---:|---:|---|",
        *(
            f"| {k} | {v[0]:.1f} | {warm[k]:.1f} | {', '.join(f'{w:.1f}' for w in v)} |"
            for k, v in walls.items()
        ),
        "",
        f"- ratio ray / local 1 thread, warm: **{warm[ray_name] / warm[one_name]:.2f}x**; "
        f"round 0: {walls[ray_name][0] / walls[one_name][0]:.2f}x",
        f"- ratio ray / local default threads, warm: **{warm[ray_name] / warm[default_name]:.2f}x**; "
        f"round 0: {walls[ray_name][0] / walls[default_name][0]:.2f}x",
        f"- Ray start-up (`ray.init` of a local 2-CPU instance), once per sweep: {init_s:.1f} s",
        f"- same accuracies in every cell for all three: {same}",
        "",
        "What this shows, and what a larger cluster would change: the cells of a grid are",
        "independent, so W workers finish N cells of t seconds in about ceil(N / W) * t (plus",
        "one dense training per model and seed, and Ray's start-up), against N * t for the",
        "local backend. On 2 cores, 2 single-thread workers can at best halve the wall time of",
        "the 1-thread local run; the cold round adds Ray's fixed costs (worker processes",
        "importing torch, loading the dataset once per worker, shipping the dense model",
        "through the object store), which a small grid does not amortize. When the machine is",
        "oversubscribed by other jobs, one process with 2 OpenMP threads can be far slower",
        "than 2 processes of 1 thread (threads wait for each other), which is what a large",
        "'local, default threads' figure above means -- a property of this shared machine, not",
        "of Ray. On a cluster of many nodes the speed-up grows with the number of free cores",
        "until the grid has fewer cells than workers; each node then needs the same prunekit",
        "and torch, and the dataset files (or `--download`) locally.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

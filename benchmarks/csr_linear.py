"""Dense vs CSR Linear layers: where is the break-even sparsity?

Part 1, single layers: ``nn.Linear`` (MKL sgemm) vs ``prunekit.inference.sparse.SparseLinear``
(CSR @ dense) for the LeNet-300-100 shapes 784->300 and 300->100 and a large
4096->4096 layer, with a uniformly random pattern of exactly ``round(s * out * in)``
zero weights. For every (shape, batch, threads) ONE interleaved timing loop runs the
dense layer and the CSR layer at every sparsity in turn (dense time does not depend on
the values), so all candidates see the same machine state; minimum and median.

Part 2, whole model: LeNet-300-100 trained densely, magnitude-pruned (global) to 90 /
95 / 98 %, run through ``to_sparse_inference`` at each batch size (CSR only where the
layer was measured faster), and timed end to end against the same pruned model kept
dense, and against converting every layer blindly; interleaved, minimum and median.

    python benchmarks/csr_linear.py [--repeats 60] [--out benchmarks/results/csr_linear.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit import RunConfig, prune
from prunekit.inference.sparse import (
    SparseLinear,
    interleaved_samples,
    interleaved_timer,
    to_sparse_inference,
    weight_sparsity,
)
from prunekit.pipeline import dataset_for, train_dense
from prunekit.pruning.masks import clone, finalize

SHAPES = [(300, 784), (100, 300), (4096, 4096)]  # (out_features, in_features)
SPARSITIES = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
MODEL_SPARSITIES = [0.9, 0.95, 0.98]
FASHION = "/usr/share/datasets/fashion-mnist"
MIN_TIME = 5e-4  # seconds per timing sample (loops the forward)


def sparse_layer(out: int, inp: int, sp: float, seed: int = 0) -> nn.Linear:
    """A Linear layer with exactly round(sp * out * inp) zero weights, uniformly placed."""
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(inp, out)
    zeros = torch.randperm(out * inp, generator=gen)[: round(sp * out * inp)]
    with torch.no_grad():
        layer.weight.view(-1)[zeros] = 0.0
    return layer


def stats(samples: list[float]) -> dict[str, float]:
    return {"min": min(samples), "median": statistics.median(samples)}


def layer_bench(threads: list[int], batches: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for out, inp in SHAPES:
        layers = {sp: sparse_layer(out, inp, sp) for sp in SPARSITIES}
        csr = {sp: SparseLinear.from_linear(layers[sp]) for sp in SPARSITIES}
        dense = layers[SPARSITIES[0]]  # dense time does not depend on the values
        x64 = torch.randn(64, inp)
        with torch.no_grad():
            err = max(float((csr[sp](x64) - layers[sp](x64)).abs().max()) for sp in SPARSITIES)
        for t in threads:
            for b in batches:
                x = torch.randn(b, inp, generator=torch.Generator().manual_seed(b))
                cands = {"dense": lambda x=x, m=dense: m(x)}
                cands |= {sp: (lambda x=x, m=csr[sp]: m(x)) for sp in SPARSITIES}
                ms = interleaved_samples(cands, repeats=repeats, threads=t, min_time_s=MIN_TIME)
                for sp in SPARSITIES:
                    rows.append(
                        {
                            "shape": f"{inp}->{out}",
                            "threads": t,
                            "batch": b,
                            "sparsity": sp,
                            "dense": stats(ms["dense"]),
                            "csr": stats(ms[sp]),
                            "max_abs_err": err,
                        }
                    )
                print(f"  {inp}->{out} threads {t} batch {b} done", file=sys.stderr)
    return rows


def break_even(rows: list[dict[str, Any]], stat: str) -> dict[tuple[str, int, int], str]:
    """Lowest grid sparsity from which CSR is faster at it and at every higher one."""
    out: dict[tuple[str, int, int], str] = {}
    for key in dict.fromkeys((r["shape"], r["threads"], r["batch"]) for r in rows):
        group = sorted(
            (r for r in rows if (r["shape"], r["threads"], r["batch"]) == key),
            key=lambda r: r["sparsity"],
        )
        faster = [r["csr"][stat] < r["dense"][stat] for r in group]
        first = next((i for i in range(len(group)) if all(faster[i:])), None)
        out[key] = "none" if first is None else f"{group[first]['sparsity']:g}"
    return out


def trained_lenet300(epochs: int) -> tuple[nn.Module, torch.Tensor, str]:
    dataset = "fashion-mnist" if os.path.isdir(FASHION) else "synthetic"
    cfg = RunConfig(model="lenet300", dataset=dataset, epochs=epochs, seed=0)
    data = dataset_for(cfg)
    model, _, secs = train_dense(cfg, data)
    return model, data.test.x[:64], f"{dataset}, {epochs} dense epochs ({secs:.0f} s)"


def model_bench(threads: list[int], batches: list[int], repeats: int, epochs: int):
    dense, images, trained = trained_lenet300(epochs)
    rows = []
    for sp in MODEL_SPARSITIES:
        pruned = clone(dense)
        prune(pruned, "magnitude", sp)  # global magnitude: per-layer sparsity differs
        finalize(pruned).eval()
        layer_sp = {
            n: weight_sparsity(m) for n, m in pruned.named_modules() if isinstance(m, nn.Linear)
        }
        for t in threads:
            for b in batches:
                x = images[:b]
                timer = interleaved_timer(
                    repeats=repeats, threads=t, min_time_s=MIN_TIME, stat="min"
                )
                chosen, dec = to_sparse_inference(pruned, x, measure=timer)
                blind, _ = to_sparse_inference(pruned, x, min_sparsity=0.0, measure=False)
                with torch.no_grad():
                    err = float((chosen(x) - pruned(x)).abs().max())
                ms = interleaved_samples(
                    {
                        "dense": lambda x=x, m=pruned: m(x),
                        "chosen": lambda x=x, m=chosen: m(x),
                        "all-csr": lambda x=x, m=blind: m(x),
                    },
                    repeats=repeats,
                    threads=t,
                    min_time_s=MIN_TIME,
                )
                rows.append(
                    {
                        "sparsity": sp,
                        "threads": t,
                        "batch": b,
                        "layer_sparsity": layer_sp,
                        "csr_layers": [d.layer for d in dec if d.use_csr],
                        "decisions": [d.to_dict() for d in dec],
                        **{k: stats(v) for k, v in ms.items()},
                        "max_abs_err": err,
                    }
                )
                print(f"  lenet300 {sp:g} threads {t} batch {b} done", file=sys.stderr)
    return rows, trained


def fmt_layers(rows: list[dict[str, Any]], stat: str) -> str:
    lines = [
        "| layer (in->out) | threads | batch | dense ms | "
        + " | ".join(f"CSR {sp:g}" for sp in SPARSITIES)
        + " | break-even |",
        "|---|---|---|---|" + "---|" * len(SPARSITIES) + "---|",
    ]
    for key, cell in break_even(rows, stat).items():
        group = {r["sparsity"]: r for r in rows if (r["shape"], r["threads"], r["batch"]) == key}
        dense = group[SPARSITIES[0]]["dense"][stat]
        cells = [
            f"{group[sp]['csr'][stat]:.4f} ({dense / group[sp]['csr'][stat]:.2f}x)"
            for sp in SPARSITIES
        ]
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {dense:.4f} | "
            + " | ".join(cells)
            + f" | {cell} |"
        )
    return "\n".join(lines)


def fmt_model(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| sparsity | fc1 / fc2 / fc3 sparsity | threads | batch | layers on CSR | "
        "dense ms (min / median) | CSR where faster (min / median) | speed-up (min) | "
        "all-CSR (min / median) | all-CSR speed-up (min) | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ls = " / ".join(f"{v:.3f}" for v in r["layer_sparsity"].values())
        d, c, a = r["dense"], r["chosen"], r["all-csr"]
        lines.append(
            f"| {r['sparsity']:g} | {ls} | {r['threads']} | {r['batch']} | "
            f"{', '.join(r['csr_layers']) or 'none'} | {d['min']:.4f} / {d['median']:.4f} | "
            f"{c['min']:.4f} / {c['median']:.4f} | {d['min'] / c['min']:.2f}x | "
            f"{a['min']:.4f} / {a['median']:.4f} | {d['min'] / a['min']:.2f}x | "
            f"{r['max_abs_err']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    ap.add_argument("--epochs", type=int, default=2, help="Dense epochs of the LeNet-300-100.")
    ap.add_argument("--out", type=Path, default=None, help="Markdown results file to write.")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    layers = layer_bench(args.threads, args.batches, args.repeats)
    model_rows, trained = model_bench(args.threads, args.batches, args.repeats, args.epochs)
    wall = time.perf_counter() - t0
    text = "\n".join(
        [
            "# Dense vs CSR Linear layers",
            "",
            f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ",
            f"Date: {datetime.date.today().isoformat()}; torch {torch.__version__}, python "
            f"{platform.python_version()}, {os.cpu_count()} CPU cores, load average at start "
            f"{load:.1f}; wall {wall / 60:.1f} min.",
            "",
            f"Load average at the end {os.getloadavg()[0]:.1f}. ms per forward, interleaved in "
            f"one process ({args.repeats} rounds; every round times each candidate once, each "
            f"sample loops the forward for >= {MIN_TIME * 1e3:g} ms). Two statistics of the "
            "same samples: **min** (the least-disturbed run: the code's own speed, robust to "
            "the other jobs on this shared 2-core machine) and **median** (what a run here "
            "typically saw, load included). Speed-up = dense ms / CSR ms (> 1: CSR faster). "
            "Break-even = lowest sparsity of the grid from which CSR is faster at every higher "
            "grid sparsity ('none': dense wins even at 99 %).",
            "",
            "## Single layers (random pattern, exact sparsity): min",
            "",
            fmt_layers(layers, "min"),
            "",
            "## Single layers: median",
            "",
            fmt_layers(layers, "median"),
            "",
            f"Max |CSR - dense| output difference over all layers and sparsities: "
            f"{max(r['max_abs_err'] for r in layers):.1e}.",
            "",
            f"## LeNet-300-100 end to end ({trained}, global magnitude pruning, no fine-tuning)",
            "",
            "'CSR where faster' = `to_sparse_inference(model, batch)` deciding per layer with "
            "`interleaved_timer(stat='min')` at that batch size and thread count; 'all-CSR' = "
            "every Linear converted without measuring; speed-ups from the minima.",
            "",
            fmt_model(model_rows),
            "",
        ]
    )
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(
            json.dumps({"layers": layers, "model": model_rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()

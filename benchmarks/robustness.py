"""Robust-learning benchmark: does robustness to input noise survive pruning?

magnitude vs gaussian vs saltpepper (the spec's noise models) on LeNet-300-100 and
LeNet-5, Fashion-MNIST, at sparsity 0 (fine-tuning only), 0.9 and 0.95; same dense
model per (model, seed), same sparsify budget for every method. Clean accuracy and
accuracy under Gaussian noise (sigma 0.1..0.5) and salt-and-pepper noise (density
0.05..0.2) on the same corrupted test set (fixed evaluation seed) for every model.

It also measures the criterion choice of the noise methods: magnitude of the robustly
trained weights (the registered default) vs the noise-aware ``noise-sensitivity``
criterion (Fisher estimate of the loss increase under noise), same runs otherwise.

    python benchmarks/robustness.py [--seeds 0 1] [--out benchmarks/results/robustness.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import dense_baseline

from prunekit import RunConfig, run
from prunekit.pruning.methods import METHODS, get_method
from prunekit.pruning.objectives import OBJECTIVES

# (model, dense epochs, sparsify epochs, training-example limit): LeNet-5 is ~12 s per
# full epoch on these 2 shared cores, so it trains on the first 10000 examples.
BUDGETS = {"lenet300": (10, 3, None), "lenet5": (6, 2, 10000)}
MAIN_METHODS = ("magnitude", "gaussian", "saltpepper")
CRITERION_VARIANTS = {"gaussian+ns": "gaussian", "saltpepper+ns": "saltpepper"}


def register_variants() -> None:
    """The noise methods with the noise-sensitivity criterion instead of magnitude."""
    from dataclasses import replace

    for name, base in CRITERION_VARIANTS.items():
        if name not in METHODS:
            METHODS.add(name, replace(get_method(base), name=name, criterion="noise-sensitivity"))


def row_of(res: dict[str, Any], **extra: Any) -> dict[str, Any]:
    keep = (
        "accuracy",
        "accuracy_gaussian",
        "accuracy_saltpepper",
        "accuracy_corrupted_mean",
        "achieved_sparsity",
    )
    return {**extra, **{k: res[k] for k in keep}}


def bench(
    models: list[str], seeds: list[int], sparsities: list[float], criterion: bool = True
) -> list[dict[str, Any]]:
    register_variants()
    rows: list[dict[str, Any]] = []
    for model in models:
        epochs, ft_epochs, limit = BUDGETS[model]
        for seed in seeds:
            base = RunConfig(
                model=model,
                dataset="fashion-mnist",
                epochs=epochs,
                finetune_epochs=ft_epochs,
                limit=limit,
                seed=seed,
                latency_repeats=3,
                latency_batch_sizes=[1],
            )
            data, dense_model, dense_s, dense_metrics = dense_baseline(base)
            rows.append(
                row_of(
                    dense_metrics,
                    model=model,
                    method="dense",
                    criterion="-",
                    sparsity=0.0,
                    seed=seed,
                    seconds=dense_s,
                )
            )
            print(
                f"[{model} seed {seed}] dense {dense_s:.0f}s acc {rows[-1]['accuracy']:.4f} "
                f"corrupted {rows[-1]['accuracy_corrupted_mean']:.4f}",
                flush=True,
            )
            jobs = [(m, s) for s in sparsities for m in MAIN_METHODS]
            if criterion:
                jobs += [(m, s) for s in sparsities if s > 0 for m in CRITERION_VARIANTS]
            for method, sparsity in jobs:
                cfg = RunConfig(**{**base.to_dict(), "method": method, "sparsity": sparsity})
                t0 = time.perf_counter()
                res = run(cfg, dense=(dense_model, dense_s), data=data).result
                secs = time.perf_counter() - t0
                rows.append(
                    row_of(
                        res,
                        model=model,
                        method=method,
                        criterion=get_method(method).criterion,
                        sparsity=sparsity,
                        seed=seed,
                        seconds=secs,
                    )
                )
                print(
                    f"[{model} seed {seed}] {method:14s} s={sparsity:<4g} {secs:5.0f}s "
                    f"acc {res['accuracy']:.4f} corrupted {res['accuracy_corrupted_mean']:.4f}",
                    flush=True,
                )
    return rows


def fmt(values: list[float]) -> str:
    """Mean over seeds, and the half-range (max-min)/2 as a spread when > 1 seed."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * (max(values) - min(values)) / 2:.2f}"


def table(rows: list[dict[str, Any]], methods: tuple[str, ...]) -> str:
    sig, den = rows[0]["accuracy_gaussian"], rows[0]["accuracy_saltpepper"]
    head = (
        ["model", "method", "criterion", "sparsity", "clean", "corrupted mean"]
        + [f"gauss σ={k}" for k in sig]
        + [f"s&p p={k}" for k in den]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = dict.fromkeys(
        (r["model"], r["method"], r["sparsity"]) for r in rows if r["method"] in methods
    )
    for model, method, sparsity in keys:
        group = [
            r for r in rows if (r["model"], r["method"], r["sparsity"]) == (model, method, sparsity)
        ]
        cells = [
            model,
            method,
            group[0]["criterion"],
            f"{sparsity:g}",
            fmt([r["accuracy"] for r in group]),
            fmt([r["accuracy_corrupted_mean"] for r in group]),
        ]
        cells += [fmt([r["accuracy_gaussian"][k] for r in group]) for k in sig]
        cells += [fmt([r["accuracy_saltpepper"][k] for r in group]) for k in den]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows: list[dict[str, Any]], provenance: list[str], budget: str) -> str:
    """The Markdown results: provenance lines, settings, then the tables of ``rows``."""
    defaults = "; ".join(OBJECTIVES.get(n)().describe() for n in ("gaussian", "saltpepper"))
    seeds = sorted({r["seed"] for r in rows})
    text = [
        "# Robustness to input noise: magnitude vs gaussian vs saltpepper",
        "",
        *provenance,
        "",
        f"Budget (same for every method of a model): {budget}; lr = model recipe, "
        "sparsify lr = 0.1 x; one-shot global weight pruning at the start of the sparsify "
        "phase. Dense model trained once per (model, seed) and shared by all methods.",
        f"Noise methods at their default options: {defaults}.",
        f"Accuracy in % on the 10000 Fashion-MNIST test images, mean ± half-range over seeds "
        f"{seeds}; corrupted test sets drawn with the fixed evaluation seed 1234 (the "
        "same images for every model). 'corrupted mean' = mean over the 7 corruptions.",
        "Sampling error of one accuracy near 85% on 10000 images: ±0.36 points (1 s.e.).",
        "",
        "## Methods (criterion: magnitude)",
        "",
        table(rows, ("dense", *MAIN_METHODS)),
        "",
    ]
    if any(r["method"] in CRITERION_VARIANTS for r in rows):
        text += [
            "## Criterion of the noise methods: magnitude vs noise-sensitivity",
            "",
            "`+ns` = same method and runs, criterion `noise-sensitivity` "
            "(w² · Σ_b (∂L_noisy,b/∂w)², 8 calibration batches of the 512 validation images).",
            "",
            table(rows, ("gaussian", "gaussian+ns", "saltpepper", "saltpepper+ns")),
            "",
        ]
    return "\n".join(text)


def budget_text(models: list[str]) -> str:
    return ", ".join(
        f"{m}: dense {e} epochs, sparsify {f} epochs"
        + (f", first {lim} training examples" if lim else ", full training set")
        for m, (e, f, lim) in BUDGETS.items()
        if m in models
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet300", "lenet5"], choices=sorted(BUDGETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.0, 0.9, 0.95])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-criterion", action="store_true", help="Skip the criterion variants.")
    ap.add_argument("--quick", action="store_true", help="Smoke test: 2000 examples, 1 epoch.")
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="Only build the report from the .json rows of earlier runs.",
    )
    ap.add_argument("--out", type=Path, default=None, help="Markdown results file to write.")
    args = ap.parse_args()
    command = f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  "
    date = f"Date: {datetime.date.today().isoformat()}; torch {torch.__version__}, python {platform.python_version()}"
    if args.merge:
        rows = [r for path in args.merge for r in json.loads(path.read_text())]
        sources = []
        for path in args.merge:
            md = path.with_suffix(".md")
            cmd = next((ln for ln in md.read_text().splitlines() if ln.startswith("Command:")), "?")
            sources.append(f"- `{path}` — {cmd.removeprefix('Command: ').strip()}")
        models = list(dict.fromkeys(r["model"] for r in rows))
        text = report(
            rows, [command, f"{date}.", "Rows produced by:", *sources], budget_text(models)
        )
    else:
        torch.set_num_threads(args.threads)
        if args.quick:
            BUDGETS.update({m: (1, 1, 2000) for m in BUDGETS})
        t0 = time.perf_counter()
        rows = bench(args.models, args.seeds, args.sparsities, not args.no_criterion)
        wall = time.perf_counter() - t0
        provenance = [command, f"{date}, {args.threads} threads; wall {wall / 60:.1f} min."]
        text = report(rows, provenance, budget_text(args.models))
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        if not args.merge:
            args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Information-theory family benchmark: which unit-removal criterion/objective works?

entropy (histogram and gaussian estimator) vs maxent vs minent vs l1-filter vs random,
all at neuron granularity with per-layer scope (the same fraction of units removed
from every hidden layer; classifier head kept), on LeNet-300-100 and LeNet-5,
Fashion-MNIST, at 25 / 50 / 75 % of units removed. One dense model per (model, seed),
shared by all methods; the same sparsify budget (fine-tune epochs) for every method:
methods without a training term prune at its start and fine-tune for all of it,
maxent/minent regularize for the first half, prune, then fine-tune the second half.

Besides accuracy it measures what the entropy terms did (from result.json's
``objective_report``): the per-unit Gaussian batch entropy on the first regularized
batch vs the last 20, the fraction of units whose activation collapsed (std < 0.01),
and the calibration histogram entropy at the pruning event vs the dense model's;
and, on the dense models, how the entropy scores rank units compared with the L1
norm (Spearman correlation), which says whether entropy is more than magnitude.

    python benchmarks/entropy.py [--seeds 0 1] [--out benchmarks/results/entropy.md]
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _common import dense_baseline

from prunekit import RunConfig, run
from prunekit.pruning.entropy import unit_entropies
from prunekit.pruning.masks import prunable_modules
from prunekit.pruning.methods import METHODS, get_method
from prunekit.pruning.objectives import OBJECTIVES

# (dense epochs, sparsify epochs, training-example limit, test limit): sized so the whole
# grid fits ~25 min on 2 heavily shared cores with ONE torch thread (measured: 2 threads
# under contention ran 10-30x slower per example than 1 thread).
BUDGETS = {"lenet300": (6, 2, 20000, 5000), "lenet5": (4, 2, 5000, 5000)}
METHOD_NAMES = ("entropy", "maxent", "minent", "l1-filter", "random")
# The Gaussian-estimator variant of the entropy criterion, on the cheaper model only.
EXTRA_METHODS = {"lenet300": ("entropy-gauss",), "lenet5": ()}
HIST_BINS = [-6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]


def register_variants() -> None:
    """The entropy method with the Gaussian estimator instead of the histogram."""
    if "entropy-gauss" not in METHODS:
        base = get_method("entropy")
        METHODS.add(
            "entropy-gauss",
            replace(base, name="entropy-gauss", criterion_args={"estimator": "gaussian"}),
        )


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def dense_diagnostics(model: torch.nn.Module, calib: torch.Tensor) -> dict[str, Any]:
    """Mean unit entropies of the dense model and their rank correlation with L1 norms."""
    layers = prunable_modules(model, include_last=False)
    hist = unit_entropies(model, calib, layers, estimator="histogram")
    gauss = unit_entropies(model, calib, layers, estimator="gaussian")
    l1 = {n: m.weight.detach().abs().flatten(1).mean(1) for n, m in layers.items()}
    cat = lambda d: torch.cat(list(d.values()))  # noqa: E731
    return {
        "hist_mean": float(cat(hist).mean()),
        "gauss_mean": float(cat(gauss).mean()),
        "rho_hist_l1": statistics.fmean(spearman(hist[n], l1[n]) for n in layers),
        "rho_gauss_l1": statistics.fmean(spearman(gauss[n], l1[n]) for n in layers),
        "rho_hist_gauss": statistics.fmean(spearman(hist[n], gauss[n]) for n in layers),
    }


def row_of(res: dict[str, Any], **extra: Any) -> dict[str, Any]:
    keep = ("accuracy", "accuracy_corrupted_mean", "achieved_sparsity", "params_total")
    row = {**extra, **{k: res.get(k) for k in keep}}
    rep = res.get("objective_report")
    if rep:
        units = lambda part: [v for vs in rep[part]["units"].values() for v in vs]  # noqa: E731
        row["entropy"] = {
            "start_mean": rep["start"]["mean"],
            "end_mean": rep["end"]["mean"],
            "start_collapsed": rep["start"]["frac_std_below_0.01"],
            "end_collapsed": rep["end"]["frac_std_below_0.01"],
            "start_negative": rep["start"]["frac_negative"],
            "end_negative": rep["end"]["frac_negative"],
            "prune_hist_mean": rep["at_prune"]["mean"],
            "start_units": units("start"),
            "end_units": units("end"),
        }
    return row


def bench(
    models: list[str], seeds: list[int], sparsities: list[float], methods: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    register_variants()
    rows: list[dict[str, Any]] = []
    diags: list[dict[str, Any]] = []
    for model in models:
        epochs, ft_epochs, limit, test_limit = BUDGETS[model]
        for seed in seeds:
            base = RunConfig(
                model=model,
                dataset="fashion-mnist",
                epochs=epochs,
                finetune_epochs=ft_epochs,
                limit=limit,
                test_limit=test_limit,
                seed=seed,
                granularity="neuron",
                scope="layer",
                latency_repeats=1,
                latency_batch_sizes=[1],
            )
            data, dense_model, dense_s, dense_metrics = dense_baseline(base)
            rows.append(
                row_of(
                    dense_metrics,
                    model=model,
                    method="dense",
                    sparsity=0.0,
                    seed=seed,
                    seconds=dense_s,
                )
            )
            diags.append(
                {"model": model, "seed": seed, **dense_diagnostics(dense_model, data.val.x[:512])}
            )
            print(
                f"[{model} seed {seed}] dense {dense_s:.0f}s acc {rows[-1]['accuracy']:.4f} "
                f"{diags[-1]}",
                flush=True,
            )
            for sparsity in sparsities:
                for method in [*methods, *EXTRA_METHODS[model]]:
                    cfg = replace(base, method=method, sparsity=sparsity)
                    t0 = time.perf_counter()
                    res = run(cfg, dense=(dense_model, dense_s), data=data).result
                    secs = time.perf_counter() - t0
                    rows.append(
                        row_of(
                            res,
                            model=model,
                            method=method,
                            sparsity=sparsity,
                            seed=seed,
                            seconds=secs,
                        )
                    )
                    ent = rows[-1].get("entropy")
                    extra = (
                        f" H {ent['start_mean']:.2f}->{ent['end_mean']:.2f} collapsed "
                        f"{ent['start_collapsed']:.2f}->{ent['end_collapsed']:.2f}"
                        if ent
                        else ""
                    )
                    print(
                        f"[{model} seed {seed}] {method:13s} s={sparsity:<4g} {secs:4.0f}s "
                        f"acc {res['accuracy']:.4f} corrupted {res['accuracy_corrupted_mean']:.4f}"
                        + extra,
                        flush=True,
                    )
    return rows, diags


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """Mean over seeds, ± half-range (max-min)/2 when there is more than one seed."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * (max(values) - min(values)) / 2:.{digits}f}"


def groups(rows: list[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def accuracy_table(rows: list[dict[str, Any]], model: str, methods: list[str], key: str) -> str:
    sparsities = sorted({r["sparsity"] for r in rows if r["method"] != "dense"})
    head = ["method", *[f"{int(100 * s)} % units removed" for s in sparsities]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    g = groups(rows, "model", "method", "sparsity")
    dense = g[(model, "dense", 0.0)]
    lines.append(
        "| dense (0 %) | " + " | ".join(fmt([r[key] for r in dense]) for _ in sparsities) + " |"
    )
    for method in methods:
        cells = [fmt([r[key] for r in g[(model, method, s)]]) for s in sparsities]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def entropy_table(rows: list[dict[str, Any]]) -> str:
    head = [
        "model",
        "method",
        "units removed",
        "Gaussian H mean: first batch -> last 20",
        "units with std < 0.01: first -> last",
        "units with H < 0: first -> last",
        "histogram H at pruning (calibration)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, method, s), group in groups(rows, "model", "method", "sparsity").items():
        if not group[0].get("entropy"):
            continue
        e = [r["entropy"] for r in group]
        lines.append(
            "| "
            + " | ".join(
                [
                    model,
                    method,
                    f"{int(100 * s)} %",
                    f"{fmt([x['start_mean'] for x in e], 1)} -> {fmt([x['end_mean'] for x in e], 1)}",
                    f"{fmt([x['start_collapsed'] for x in e], 100, 0)} % -> "
                    f"{fmt([x['end_collapsed'] for x in e], 100, 0)} %",
                    f"{fmt([x['start_negative'] for x in e], 100, 0)} % -> "
                    f"{fmt([x['end_negative'] for x in e], 100, 0)} %",
                    fmt([x["prune_hist_mean"] for x in e], 1),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def histogram_table(rows: list[dict[str, Any]], sparsity: float) -> str:
    """Counts of per-unit Gaussian batch entropy, first batch vs last 20, all seeds."""
    edges = HIST_BINS
    head = ["model", "method", "when"] + [
        f"[{a:g}, {b:g})" for a, b in zip(edges, edges[1:], strict=False)
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, method), group in groups(
        [r for r in rows if r.get("entropy") and r["sparsity"] == sparsity], "model", "method"
    ).items():
        for when in ("start", "end"):
            values = torch.tensor([v for r in group for v in r["entropy"][f"{when}_units"]])
            counts = torch.histogram(
                values.clamp(edges[0], edges[-1] - 1e-6), torch.tensor(edges)
            ).hist
            label = "first batch" if when == "start" else "last 20 batches"
            lines.append(
                f"| {model} | {method} | {label} | "
                + " | ".join(str(int(c)) for c in counts)
                + " |"
            )
    return "\n".join(lines)


def diag_table(diags: list[dict[str, Any]]) -> str:
    head = [
        "model",
        "histogram H mean",
        "Gaussian H mean",
        "ρ(histogram H, L1)",
        "ρ(Gaussian H, L1)",
        "ρ(histogram H, Gaussian H)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model,), group in groups(diags, "model").items():
        lines.append(
            "| "
            + " | ".join(
                [model]
                + [
                    fmt([d[k] for d in group], 1)
                    for k in (
                        "hist_mean",
                        "gauss_mean",
                        "rho_hist_l1",
                        "rho_gauss_l1",
                        "rho_hist_gauss",
                    )
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet300", "lenet5"], choices=sorted(BUDGETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    ap.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="Smoke test: 3000 examples, 1 epoch.")
    ap.add_argument("--out", type=Path, default=None, help="Markdown results file to write.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        BUDGETS.update({m: (1, 1, 3000, 1000) for m in BUDGETS})
    t0 = time.perf_counter()
    rows, diags = bench(args.models, args.seeds, args.sparsities, args.methods)
    wall = time.perf_counter() - t0
    budget = "; ".join(
        f"{m}: dense {e} epochs, sparsify {f} epochs, first {lim} training examples, "
        f"first {tl} test images"
        for m, (e, f, lim, tl) in BUDGETS.items()
        if m in args.models
    )
    objectives = "; ".join(OBJECTIVES.get(n)().describe() for n in ("maxent", "minent"))
    parts = [
        "# Information-theory family: entropy vs maxent vs minent vs L1-filter vs random",
        "",
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ",
        f"Date: {datetime.date.today().isoformat()}; torch {torch.__version__}, python "
        f"{platform.python_version()}, {args.threads} torch thread(s) on a shared 2-core machine; wall "
        f"{wall / 60:.1f} min.",
        "",
        f"Budget (same for every method of a model): {budget}. Learning rate = model recipe, "
        "sparsify lr = 0.1 x. Neuron granularity, per-layer scope: the given fraction of the "
        "units of every hidden layer (conv filters, fc units) is removed, the classifier "
        "head is kept; one-shot. Dense model trained once per (model, seed) and shared.",
        f"Objectives at their default options: {objectives}. Entropy criterion: histogram "
        "(32 bins) or Gaussian (`entropy-gauss`) over the 512 validation images "
        "(2 batches of 256).",
        f"Accuracy in % (mean ± half-range over seeds {args.seeds}); 'corrupted' = mean "
        "accuracy over the 7 noise corruptions (Gaussian σ 0.1-0.5, salt-and-pepper "
        "0.05-0.2) of the same test images. "
        + "; ".join(
            f"one {m} accuracy near 85 % on {tl} test images has a sampling error of "
            f"±{100 * (0.85 * 0.15 / tl) ** 0.5:.1f} points (1 s.e.)"
            for m, (_, _, _, tl) in BUDGETS.items()
            if m in args.models
        )
        + ".",
        "",
    ]
    for model in args.models:
        for key, label in (("accuracy", "clean"), ("accuracy_corrupted_mean", "corrupted")):
            parts += [
                f"## {model}: {label} test accuracy",
                "",
                accuracy_table(
                    [r for r in rows if r["model"] == model],
                    model,
                    [*args.methods, *EXTRA_METHODS[model]],
                    key,
                ),
                "",
            ]
    parts += [
        "## What the entropy terms did (measured during the runs)",
        "",
        "Gaussian H = 0.5 log(2πe(σ²+1e-6)) per unit on the training batch (nats), "
        "on the first regularized batch (before any update) and averaged over the "
        "last 20 regularized batches; 'std < 0.01' = collapsed unit. Histogram H "
        "(scale-free, 0..log 32 = 3.47) from the criterion at the pruning event.",
        "",
        entropy_table(rows),
        "",
        "Per-unit Gaussian H counts (all hidden units, all seeds) at 50 % removal:",
        "",
        histogram_table(rows, 0.5),
        "",
        "## Dense models: entropy scores vs the L1 norm",
        "",
        "Mean unit entropies on the 512 calibration images, and the mean over layers "
        "of Spearman's rank correlation between per-unit scores.",
        "",
        diag_table(diags),
        "",
    ]
    text = "\n".join(parts)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        slim = [
            {k: v for k, v in r.items() if k != "entropy"}
            | (
                {"entropy": {k: v for k, v in r["entropy"].items() if not k.endswith("units")}}
                if r.get("entropy")
                else {}
            )
            for r in rows
        ]
        args.out.with_suffix(".json").write_text(
            json.dumps({"rows": slim, "dense": diags}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()

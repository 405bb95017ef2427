"""Sparse-optimization benchmark: magnitude vs gmp vs l1 vs l0 (spec §1).

LeNet-300-100 and LeNet-5 on Fashion-MNIST at sparsities 0.9 / 0.95 / 0.98, every
method with the same dense model per (model, seed) and the same sparsify budget
(epochs, lr). Records test accuracy (mean ± std over seeds), achieved sparsity, and
the sparsify-phase time; plus the training-step time of each method's regularized
step relative to a dense step (same process, interleaved, medians), and, on
LeNet-300-100, L1's proximal vs subgradient update (``l1-subgradient``).

The budget (``BUDGETS``) and the two settings that differ from the library defaults
(sparsify lr, L1 lambda) were chosen on the validation split, seed 0, with
``benchmarks/sparse_optimization_tuning.py`` (results/sparse_optimization_tuning.md).

    python benchmarks/sparse_optimization.py [--seeds 0 1] [--threads 1] [--jobs 2] \
        [--out benchmarks/results/sparse_optimization.md]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from prunekit import RunConfig, create_model, run
from prunekit.evaluation import accuracy
from prunekit.models import default_recipe
from prunekit.pipeline import dataset_for, dense_config, train_dense
from prunekit.pruning.methods import METHODS, get_method
from prunekit.pruning.objectives import OBJECTIVES
from prunekit.pruning.options import RunFacts
from prunekit.pruning.step import prune, target_modules

# (model, dense epochs, sparsify epochs, training-example limit). LeNet-300-100: 20 dense
# epochs (a dense model trained for all 52 epochs gains only ~0.2 pt on test, see the
# "same total epochs" reference in the results) and a 32-epoch sparsify phase: gmp's mean
# validation drop at 98 % falls 1.57 -> 1.17 -> 1.06 -> 0.99 pt over 8 / 16 / 24 / 32
# epochs (seeds 0-1, results/sparse_optimization_tuning.md). LeNet-5 is ~20x slower per
# step, so it trains on the first 15000 examples with a small budget (~6 s per epoch then).
BUDGETS = {"lenet300": (20, 32, None), "lenet5": (4, 4, 15000)}
# The sparsify phase restarts at the model recipe's lr (RunConfig.finetune_lr; the library
# default is 0.1 x): at 98 % the few weights left must move far, and on the validation
# split (16 epochs, seed 0) 1.0 x beat 0.3 x and 0.1 x for both magnitude and gmp.
FINETUNE_LR_FACTOR = 1.0
# L1's per-step soft threshold is lr * lambda; the library default lambda = 1e-2 is tuned
# for the default sparsify lr (0.01 on LeNet-300-100), i.e. a threshold of 1e-4 per step.
# At lr 0.1 that lambda over-prunes the small layers (fc3 ends 92 % sparse, vs 73 % at
# lambda 1e-3, and 0.9 pt lower validation accuracy at 98 %); lambda =
# 1e-4 / lr keeps the default's threshold and was the best lambda on validation at lr 0.1.
L1_STEP_THRESHOLD = 1e-4
METHOD_NAMES = ("magnitude", "gmp", "l1", "l0")
SPARSITIES = (0.9, 0.95, 0.98)
DATA_DIR = "/usr/share/datasets/fashion-mnist"


def register_variants() -> None:
    if "l1-subgradient" not in METHODS:
        base = get_method("l1")
        METHODS.add(
            "l1-subgradient",
            replace(base, name="l1-subgradient", objective_args={"update": "subgradient"}),
        )


def finetune_lr(model: str) -> float:
    return FINETUNE_LR_FACTOR * default_recipe(model)["lr"]


def method_args(model: str, method: str) -> dict[str, Any]:
    if method.startswith("l1"):
        return {"lam": L1_STEP_THRESHOLD / finetune_lr(model)}
    return {}


def grid_one(
    model: str, seed: int, threads: int, budget: tuple[int, int, int | None]
) -> list[dict[str, Any]]:
    """Every (sparsity, method) of one (model, seed), from one shared dense model; plus a
    dense model trained for the same total epochs (dense + sparsify), as a reference."""
    torch.set_num_threads(threads)
    register_variants()
    epochs, ft, limit = budget
    methods = METHOD_NAMES + (("l1-subgradient",) if model == "lenet300" else ())
    base = RunConfig(
        model=model,
        dataset="fashion-mnist",
        epochs=epochs,
        finetune_epochs=ft,
        finetune_lr=finetune_lr(model),
        limit=limit,
        seed=seed,
        data_dir=DATA_DIR,
        latency_repeats=1,
        latency_batch_sizes=[1],
        noise_sigmas=[],
        noise_densities=[],
    )
    data = dataset_for(base)
    dense_model, _, dense_s = train_dense(dense_config(base), data)
    long_model, _, _ = train_dense(dense_config(replace(base, epochs=epochs + ft)), data)
    dense_long = accuracy(long_model, data.test.x, data.test.y)
    rows: list[dict[str, Any]] = []
    for sparsity in SPARSITIES:
        for method in methods:
            cfg = replace(
                base, method=method, sparsity=sparsity, method_args=method_args(model, method)
            )
            t0 = time.perf_counter()
            res = run(cfg, dense=(dense_model, dense_s), data=data).result
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "sparsity": sparsity,
                    "seed": seed,
                    "accuracy": res["accuracy"],
                    "val_accuracy": res["val_accuracy"],
                    "dense": res["accuracy_dense"],
                    "dense_long": dense_long,
                    "achieved": res["achieved_sparsity"],
                    "sparsify_s": res["train_seconds"]["sparsify"],
                    "report": res.get("objective_report"),
                }
            )
            print(
                f"[{model} seed {seed}] {method:15s} s={sparsity:<4g} "
                f"{time.perf_counter() - t0:5.0f}s acc {res['accuracy']:.4f} "
                f"(dense {res['accuracy_dense']:.4f}) achieved "
                f"{res['achieved_sparsity']:.4f}",
                flush=True,
            )
    return rows


def grid(models: list[str], seeds: list[int], threads: int, jobs: int) -> list[dict[str, Any]]:
    """All (model, seed) cells; ``jobs`` > 1 runs them in that many processes (spawned, each
    with ``threads`` torch threads). Rows come back in (model, seed) order either way."""
    tasks = [(m, s, threads, BUDGETS[m]) for m in models for s in seeds]
    if jobs <= 1:
        return [r for t in tasks for r in grid_one(*t)]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        parts = pool.starmap(grid_one, tasks, chunksize=1)
    return [r for part in parts for r in part]


# -- step time ------------------------------------------------------------------------------
def step_fn(model_name: str, objective: str | None, granularity: str, batch: int):
    torch.manual_seed(0)
    model = create_model(model_name)
    if objective == "masked":
        prune(model, "magnitude", 0.9)
        objective = None
    obj = None
    if objective is not None:
        facts = RunFacts(granularity, 0.9, 10**6)  # l0 steers to 0.9 over a long window
        obj = OBJECTIVES.get(objective)(facts, check_every=0)
        obj.attach(model, target_modules(model, granularity))
    groups = [{"params": list(model.parameters())}, *(obj.param_groups() if obj else [])]
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=5e-4)  # + L0's gates
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        if obj is not None:
            p = obj.penalty(model)
            if p is not None:
                loss = loss + p
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if obj is not None:
            obj.before_step(model)  # what Pruner's optimizer step pre-hook runs
        opt.step()
        if obj is not None:
            obj.after_step(model, 0.01)

    return step


STEP_VARIANTS = {  # name: (objective, granularity)
    "dense": (None, "weight"),
    "masked 90 %": ("masked", "weight"),
    "l1 proximal": ("l1", "weight"),
    "l0 weight gates": ("l0", "weight"),
    "l0 neuron gates": ("l0", "neuron"),
}


def step_times(model_name: str, repeats: int, batch: int = 128) -> dict[str, float]:
    steps = {k: step_fn(model_name, o, g, batch) for k, (o, g) in STEP_VARIANTS.items()}
    for _ in range(5):
        for s in steps.values():
            s()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, s in steps.items():  # interleaved: all see the same machine state
            t0 = time.perf_counter()
            s()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


# -- report ---------------------------------------------------------------------------------
def ms(values: list[float]) -> str:
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.2f} ± {100 * sd:.2f}"


def accuracy_table(rows: list[dict[str, Any]], model: str, methods: tuple[str, ...]) -> list[str]:
    first = [
        r
        for r in rows
        if r["model"] == model and r["method"] == methods[0] and r["sparsity"] == SPARSITIES[0]
    ]
    epochs, ft, _ = BUDGETS[model]
    out = [
        f"### {model} (dense, {epochs} epochs: {ms([r['dense'] for r in first])} %; dense, "
        f"same total epochs ({epochs + ft}): {ms([r['dense_long'] for r in first])} %)",
        "",
        "| method | "
        + " | ".join(f"acc @ {s:g}" for s in SPARSITIES)
        + " | "
        + " | ".join(f"achieved @ {s:g}" for s in SPARSITIES)
        + " | drop @ 0.98 (pt) | drop @ 0.98 vs same-epochs dense (pt) |",
        "|---|" + "---|" * (2 * len(SPARSITIES) + 2),
    ]
    for method in methods:
        cells, achieved = [], []
        for s in SPARSITIES:
            g = [r for r in rows if (r["model"], r["method"], r["sparsity"]) == (model, method, s)]
            cells.append(ms([r["accuracy"] for r in g]))
            achieved.append(f"{statistics.fmean(r['achieved'] for r in g):.4f}")
        out.append(
            f"| {method} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(achieved)
            + f" | {drop98(rows, model, method):.2f} | {drop98(rows, model, method, 'dense_long'):.2f} |"
        )
    return out


def drop98(rows: list[dict[str, Any]], model: str, method: str, ref: str = "dense") -> float:
    """Mean over seeds of (reference - pruned) test accuracy at 98 %, in points."""
    g = [r for r in rows if (r["model"], r["method"], r["sparsity"]) == (model, method, 0.98)]
    return statistics.fmean(100 * (r[ref] - r["accuracy"]) for r in g)


def target_line(rows: list[dict[str, Any]]) -> list[str]:
    """Issue #3's target: the best method keeps <= 1 pt drop at 98 % on LeNet-300-100."""
    if not any(r["model"] == "lenet300" for r in rows):
        return []
    best = min(METHOD_NAMES, key=lambda m: drop98(rows, "lenet300", m))
    d = drop98(rows, "lenet300", best)
    return [
        f"Target (issue #3: the best method within 1 pt of dense at 98 % on lenet300): "
        f"{'met' if d <= 1.0 else 'NOT met'}: best = {best}, drop {d:.2f} pt "
        f"(vs the dense model trained for the same total epochs: "
        f"{drop98(rows, 'lenet300', best, 'dense_long'):.2f} pt).",
        "",
    ]


def step_table(steps: dict[str, dict[str, float]]) -> list[str]:
    out = [
        "## Training-step time vs a dense step",
        "",
        "Median ms of one SGD step (forward, loss + penalty, backward, optimizer, the "
        "objective's after_step) at batch 128, variants interleaved in one process; "
        "ratio = variant / dense.",
        "",
        "| model | " + " | ".join(STEP_VARIANTS) + " |",
        "|---|" + "---|" * len(STEP_VARIANTS),
    ]
    for model, t in steps.items():
        d = t["dense"]
        out.append(
            f"| {model} | "
            + " | ".join(f"{t[k]:.2f} ms ({t[k] / d:.2f}x)" for k in STEP_VARIANTS)
            + " |"
        )
    return out


def report(
    rows: list[dict[str, Any]],
    steps: dict[str, dict[str, float]],
    provenance: list[str],
    threads: int,
) -> str:
    if not rows:
        return (
            "\n".join(
                [
                    "# Sparse optimization: training-step time vs a dense step",
                    "",
                    *provenance,
                    "",
                    f"{threads} torch thread(s).",
                    "",
                    *step_table(steps),
                ]
            )
            + "\n"
        )
    seeds = sorted({r["seed"] for r in rows})
    budgets = "; ".join(
        f"{m}: {e} dense + {f} sparsify epochs"
        + (f", first {lim} training images" if lim else ", all 54000 training images")
        + f", sparsify lr {finetune_lr(m):g}"
        for m, (e, f, lim) in BUDGETS.items()
        if any(r["model"] == m for r in rows)
    )
    text = [
        "# Sparse optimization: magnitude vs gmp vs l1 vs l0",
        "",
        *provenance,
        "",
        f"Budget (same for every method of a model): {budgets}; batch 128, SGD momentum "
        f"0.9, wd 5e-4, dense lr = model recipe, sparsify lr = {FINETUNE_LR_FACTOR:g} x the "
        "recipe lr, cosine-annealed to 0 over the phase (the library default is 0.1 x). The "
        "dense model is trained once per (model, seed) and shared by every method. "
        f"{threads} torch thread(s) per process. The sparsify lr, the phase length and L1's "
        "lambda were chosen on the validation split (seed 0, lenet300): see "
        "sparse_optimization_tuning.md.",
        "Methods at their defaults except L1's lambda: magnitude = one-shot global |w| at "
        "the start of the sparsify phase, then fine-tuning; gmp = cubic schedule, ~10 events "
        "over the first 75 % of the phase; l1 and l0 regularize for the first 50 % of the "
        "phase, prune once to the target (l1: |w|, l0: P(z != 0)), then fine-tune the other "
        f"50 %. l1 (and l1-subgradient): lambda = {L1_STEP_THRESHOLD:g} / sparsify lr ("
        + ", ".join(
            f"{m}: {L1_STEP_THRESHOLD / finetune_lr(m):g}"
            for m in BUDGETS
            if any(r["model"] == m for r in rows)
        )
        + "), i.e. the library default's soft threshold per step (1e-2 x 0.01), proximal; "
        "l0 in target-sparsity mode (lambda auto-initialized and controlled), gate_lr 0.05, "
        "init drop rate 0.05.",
        f"Accuracy in % on the 10000 Fashion-MNIST test images, mean ± std over seeds "
        f"{seeds}. 'drop' = dense - pruned accuracy at 98 %, mean over seeds (points); the "
        "last column uses the dense model trained for as many epochs as the pruned one saw "
        "in all (dense + sparsify) instead. Sampling error of one accuracy near 88 % on 10000 "
        "images: ±0.32 points (1 s.e.).",
        "",
        *target_line(rows),
        "## Accuracy and achieved sparsity",
        "",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        methods = tuple(dict.fromkeys(r["method"] for r in rows if r["model"] == model))
        text += accuracy_table(rows, model, methods) + [""]
    text += step_table(steps)
    l0_reports = [r for r in rows if r["method"] == "l0" and r["report"]]
    if l0_reports:
        text += [
            "",
            "## L0 controller at the pruning event",
            "",
            "| model | sparsity | seed | lambda | expected kept fraction | z_test open fraction |",
            "|---|---|---|---|---|---|",
        ]
        for r in l0_reports:
            rep = r["report"]
            text.append(
                f"| {r['model']} | {r['sparsity']:g} | {r['seed']} | {rep['lambda']:.3g} | "
                f"{rep['density_expected']:.4f} | {rep['open_fraction_test']:.4f} |"
            )
    l1_reports = [r for r in rows if r["method"].startswith("l1") and r["report"]]
    if l1_reports:
        text += [
            "",
            "## L1 update: exact zeros before the pruning event",
            "",
            "| model | method | sparsity | seed | zero fraction before prune | accuracy |",
            "|---|---|---|---|---|---|",
        ]
        for r in l1_reports:
            z = r["report"].get("zero_fraction_before_prune")
            text.append(
                f"| {r['model']} | {r['method']} | {r['sparsity']:g} | {r['seed']} | "
                f"{z:.4f} | {100 * r['accuracy']:.2f} |"
            )
    return "\n".join(text) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(BUDGETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--jobs", type=int, default=1, help="processes for the accuracy grid, one per (model, seed)"
    )
    ap.add_argument("--step-repeats", type=int, default=60)
    ap.add_argument(
        "--steps-only", action="store_true", help="only the training-step timing (no accuracy grid)"
    )
    ap.add_argument("--out", default="benchmarks/results/sparse_optimization.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    register_variants()
    started = datetime.datetime.now(datetime.UTC)
    steps = {m: step_times(m, args.step_repeats) for m in args.models}
    for m, t in steps.items():
        print(m, {k: round(v / t["dense"], 3) for k, v in t.items()}, flush=True)
    rows = [] if args.steps_only else grid(args.models, args.seeds, args.threads, args.jobs)
    provenance = [
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"Date: {started:%Y-%m-%d %H:%M} UTC (took "
        f"{(datetime.datetime.now(datetime.UTC) - started).total_seconds() / 60:.0f} min); "
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, 2 cores shared with other jobs (timings are noisy).",
    ]
    text = report(rows, steps, provenance, args.threads)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

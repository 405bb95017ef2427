"""Calibration-based reconstruction benchmark: SparseGPT / Wanda vs magnitude (issue 15).

Fashion-MNIST, LeNet-300-100, seeds given by ``--seeds`` (mean ± sample std), test and
validation accuracy. One dense model per seed (``--dense-epochs``), shared by every
method of that seed. Calibration: the pipeline's (first 512 examples of the seeded
validation split; labels unused).

Part A, one-shot without fine-tuning (``finetune_epochs=0``) at 0.9 / 0.95 / 0.98:
magnitude (global and layer-wise), Wanda and SparseGPT with each per-layer allocation
(uniform = ``scope="layer"``, global-magnitude, OWL) and column block size. The
SparseGPT setting with the best mean *validation* accuracy over seeds and sparsities
becomes the one used in part B (and the library default). Target: at 0.9 SparseGPT's
accuracy drop is at most half of the better one-shot magnitude's.

Part B, the same fine-tune budget for every method (``--finetune-epochs`` at the model
recipe's lr, cosine to 0) at 0.95 / 0.98 / 0.99: one-shot global magnitude + fine-tuning
(what ``torch.nn.utils.prune.global_unstructured`` + training gives, the peer), gmp
(cubic schedule), SparseGPT one-shot + fine-tuning, and SparseGPT on gmp's cubic
schedule (each event a layer-sequential SparseGPT step). Target: the best prunekit
method ≥ 1 pt above the peer. Part C: at 0.98, the best method vs a dense model trained
for the same total epochs (dense + fine-tune), on validation and test (target ≤ 1 pt).

    python benchmarks/reconstruction.py [--seeds 0 1 2] [--dense-epochs 10] \
        [--finetune-epochs 4] [--jobs 3] [--out benchmarks/results/reconstruction.md]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
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
from safetensors.torch import load_file, save_file

from prunekit import RunConfig, create_model
from prunekit.evaluation import accuracy
from prunekit.models import default_recipe
from prunekit.pipeline import CALIBRATION_EXAMPLES, architecture, dataset_for, sparsify, train_dense
from prunekit.pruning.masks import clone
from prunekit.pruning.methods import get_method, with_method_args

MODEL = "lenet300"
ONESHOT_SPARSITIES = (0.9, 0.95, 0.98)
FINETUNE_SPARSITIES = (0.95, 0.98, 0.99)
ALLOCATIONS = ("uniform", "global", "owl")
BLOCKSIZES = (16, 32, 128)


# Closing note of the full run (why targets are missed); figures stay in the tables.
NOTES = [
    "Why parts B and C miss: part A shows the reconstruction working (SparseGPT keeps most "
    "of the dense accuracy where one-shot magnitude collapses), but fine-tuning erases that "
    "head start. The peer recovers almost all of its one-shot loss within the phase, and "
    "SparseGPT's starting point does not carry over: SparseGPT one-shot + FT ends below the "
    "peer at every sparsity, and SparseGPT on the cubic schedule (pruning later, less "
    "fine-tuning after its last event) lower still. It is not the fine-tune lr: "
    "reconstruction_lr0.1.md repeats part B at 0.98 with 0.1 x the lr (the library "
    "default) and the order of the four methods is the same. The remaining suspect, not "
    "tested here, is the mask: SparseGPT's masks (and updated weights) are chosen to reproduce each "
    "layer's outputs on 512 calibration images, and they are a worse start for training "
    "than the magnitude mask (whether the magnitude mask with "
    "reconstructed weights does better is not measured). gmp needs a longer phase than this "
    "one (its cubic schedule spends 75 % of the phase pruning); with the 32-epoch phase of "
    "sparse_optimization.md it was the best method. Part C misses because a 3-epoch phase "
    "is too short for 98 % sparsity to catch up with a dense model trained as long "
    "(sparse_optimization.md comes much closer with 32 epochs); the budget was cut to fit "
    "the shared machine.",
]


def oneshot_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, method, options) of part A; options hold scope / allocation / blocksize."""
    out = [
        ("magnitude (global)", "magnitude", {"scope": "global"}),
        ("magnitude (layer)", "magnitude", {"scope": "layer"}),
        ("wanda (uniform)", "wanda", {"scope": "layer"}),
        ("wanda (global alloc.)", "wanda", {"allocation": "global"}),
    ]
    for alloc, bs in itertools.product(ALLOCATIONS, BLOCKSIZES):
        opts: dict[str, Any] = {"blocksize": bs}
        opts.update({"scope": "layer"} if alloc == "uniform" else {"allocation": alloc})
        out.append((f"sparsegpt ({alloc}, block {bs})", "sparsegpt", opts))
    return out


def make_method(name: str, options: dict[str, Any], schedule: str | None = None):
    opts = dict(options)
    scope = opts.pop("scope", None)
    return with_method_args(get_method(name).with_options(scope=scope, schedule=schedule), opts)


def base_config(seed: int, dense_epochs: int, limit: int | None) -> RunConfig:
    return RunConfig(
        model=MODEL, dataset="fashion-mnist", seed=seed, epochs=dense_epochs, limit=limit
    )


def dense_model(cfg: RunConfig, data, cache: Path):
    """The seed's dense model, trained once and cached (safetensors) for later parts."""
    path = cache / f"{cfg.model}_seed{cfg.seed}_e{cfg.epochs}_l{cfg.limit}.safetensors"
    arch = architecture(cfg, data)
    if path.exists():
        model = create_model(arch["name"], **arch["kwargs"])
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    model, _, _ = train_dense(replace(cfg, finetune_epochs=0, sparsity=0.0), data)
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.eval()


def scores(model, data) -> dict[str, float]:
    return {
        "test": 100 * accuracy(model, data.test.x, data.test.y),
        "val": 100 * accuracy(model, data.val.x, data.val.y),
    }


def part_oneshot(
    seed: int, dense_epochs: int, cache: str, threads: int, limit: int | None
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cfg = base_config(seed, dense_epochs, limit)
    data = dataset_for(cfg)
    dense = dense_model(cfg, data, Path(cache))
    rows: dict[str, Any] = {"seed": seed, "dense": scores(dense, data), "cells": []}
    for s in ONESHOT_SPARSITIES:
        for label, name, opts in oneshot_variants():
            model = clone(dense)
            t0 = time.perf_counter()
            sparsify(
                model, replace(cfg, sparsity=s, finetune_epochs=0), data, make_method(name, opts)
            )
            cell = {"label": label, "sparsity": s, "seconds": time.perf_counter() - t0}
            rows["cells"].append({**cell, **scores(model, data)})
    return rows


def part_finetune(
    seed: int,
    dense_epochs: int,
    finetune_epochs: int,
    cache: str,
    threads: int,
    chosen: dict,
    limit: int | None,
    lr_factor: float = 1.0,
    sparsities: tuple[float, ...] = FINETUNE_SPARSITIES,
    same_dense: bool = True,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cfg = base_config(seed, dense_epochs, limit)
    data = dataset_for(cfg)
    dense = dense_model(cfg, data, Path(cache))
    lr = lr_factor * default_recipe(MODEL)["lr"]
    variants = [
        ("magnitude one-shot + FT (peer)", "magnitude", {"scope": "global"}, None),
        ("gmp", "gmp", {}, None),
        ("sparsegpt one-shot + FT", "sparsegpt", chosen, None),
        ("sparsegpt on the cubic schedule", "sparsegpt", chosen, "cubic"),
    ]
    rows: dict[str, Any] = {"seed": seed, "dense": scores(dense, data), "cells": []}
    for s in sparsities:
        for label, name, opts, schedule in variants:
            model = clone(dense)
            run_cfg = replace(cfg, sparsity=s, finetune_epochs=finetune_epochs, finetune_lr=lr)
            t0 = time.perf_counter()
            sparsify(model, run_cfg, data, make_method(name, opts, schedule))
            cell = {"label": label, "sparsity": s, "seconds": time.perf_counter() - t0}
            rows["cells"].append({**cell, **scores(model, data)})
    if same_dense:
        total = replace(cfg, epochs=dense_epochs + finetune_epochs, finetune_epochs=0, sparsity=0.0)
        same, _, _ = train_dense(total, data)
        rows["dense_same_epochs"] = scores(same, data)
    return rows


def _pool(fn, args: list[tuple], jobs: int) -> list[Any]:
    if jobs <= 1:
        return [fn(*a) for a in args]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(min(jobs, len(args))) as pool:
        return pool.starmap(fn, args)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}"


def collect(results: list[dict], split: str) -> dict[tuple[str, float], list[float]]:
    out: dict[tuple[str, float], list[float]] = {}
    for r in results:
        for c in r["cells"]:
            out.setdefault((c["label"], c["sparsity"]), []).append(c[split])
    return out


def choose(results: list[dict]) -> tuple[str, dict[str, Any]]:
    """The SparseGPT variant with the best mean validation accuracy over seeds and sparsities."""
    val = collect(results, "val")
    best = max(
        (v for v in oneshot_variants() if v[1] == "sparsegpt"),
        key=lambda v: statistics.mean(x for s in ONESHOT_SPARSITIES for x in val[(v[0], s)]),
    )
    return best[0], best[2]


def table(results: list[dict], sparsities: tuple[float, ...], labels: list[str]) -> list[str]:
    test, val = collect(results, "test"), collect(results, "val")
    head = "| method | " + " | ".join(f"test @ {s}" for s in sparsities)
    head += " | " + " | ".join(f"val @ {s}" for s in sparsities) + " |"
    lines = [head, "|---" * (1 + 2 * len(sparsities)) + "|"]
    for lab in labels:
        cells = [fmt(test[(lab, s)]) for s in sparsities] + [fmt(val[(lab, s)]) for s in sparsities]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    return lines


def report(
    args,
    oneshot: list[dict],
    finetune: list[dict],
    chosen_label: str,
    took: float,
    command: str,
    date: str,
) -> str:
    seeds = [r["seed"] for r in oneshot]
    dense = {k: [r["dense"][k] for r in oneshot] for k in ("test", "val")}
    L = [
        "# Calibration-based reconstruction: SparseGPT / Wanda vs magnitude",
        "",
        f"Command: `{command}`",
        f"Date: {date} UTC (took {took / 60:.0f} min); "
        f"torch {torch.__version__}, Python {platform.python_version()}, {args.threads} torch "
        f"thread(s) per process, {args.jobs} process(es), on a 2-core machine shared with other jobs.",
        "",
        f"LeNet-300-100 on Fashion-MNIST, seeds {seeds}; accuracy in % (mean ± sample std over "
        f"seeds) on the 10000 test images and the 6000-image validation split. Dense: "
        f"{args.dense_epochs} epochs, the model recipe (SGD momentum 0.9, wd 5e-4, batch 128, "
        f"cosine lr), once per seed, shared by every method: test {fmt(dense['test'])}, val "
        f"{fmt(dense['val'])}. Calibration: the first {CALIBRATION_EXAMPLES} images of the "
        "seeded validation split (labels unused). Sampling error of one accuracy near 88 %: "
        "±0.32 pt on test, ±0.42 pt on validation (1 s.e.).",
        "",
        "## A. One-shot, no fine-tuning (`--finetune-epochs 0`)",
        "",
    ]
    labels = [v[0] for v in oneshot_variants()]
    L += table(oneshot, ONESHOT_SPARSITIES, labels)
    test, val = collect(oneshot, "test"), collect(oneshot, "val")
    L += [
        "",
        f"Chosen on validation (best mean over seeds and sparsities): **{chosen_label}**; "
        "it is the library default and the SparseGPT setting of part B.",
        "",
    ]
    for split, data in (("test", test), ("val", val)):
        d = statistics.mean(dense[split])
        mags = {lab: d - statistics.mean(data[(lab, 0.9)]) for lab in labels[:2]}
        best_mag = min(mags, key=mags.get)
        drop = d - statistics.mean(data[(chosen_label, 0.9)])
        ok = drop <= mags[best_mag] / 2
        ratio = f"ratio {drop / mags[best_mag]:.2f}" if mags[best_mag] > 0 else "no ratio"
        L.append(
            f"- Target at 0.9 ({split}): SparseGPT drop {drop:.2f} pt vs the better magnitude "
            f"({best_mag}) {mags[best_mag]:.2f} pt: {ratio} "
            + (
                "(≤ half: met)."
                if ok
                else f"(> half: missed by {drop - mags[best_mag] / 2:.2f} pt)."
            )
        )
    L += [
        "",
        f"## B. Same fine-tune budget: {args.finetune_epochs} epochs after pruning",
        "",
        f"Every method: {args.finetune_epochs} epochs (all 54000 training images) at "
        f"{args.finetune_lr_factor:g} x the recipe lr (1.0 x was chosen for 98 % in "
        "sparse_optimization_tuning.md), cosine to 0; pruning events as the method schedules "
        "them; BatchNorm recalibration n/a (LeNet has none).",
        "",
    ]
    ft_labels = list(dict.fromkeys(c["label"] for c in finetune[0]["cells"]))
    ft_sparsities = tuple(dict.fromkeys(c["sparsity"] for c in finetune[0]["cells"]))
    L += table(finetune, ft_sparsities, ft_labels)
    ftest, fval = collect(finetune, "test"), collect(finetune, "val")
    L.append("")
    peer = ft_labels[0]
    for s in ft_sparsities:
        for split, data in (("test", ftest), ("val", fval)):
            best = max(ft_labels[1:], key=lambda lab: statistics.mean(data[(lab, s)]))
            gain = statistics.mean(data[(best, s)]) - statistics.mean(data[(peer, s)])
            L.append(
                f"- {s} ({split}): best = {best}, {gain:+.2f} pt over the peer "
                + ("(≥ 1 pt: met)." if gain >= 1 else f"(< 1 pt: missed by {1 - gain:.2f} pt).")
            )
    if "dense_same_epochs" not in finetune[0] or 0.98 not in ft_sparsities:
        return "\n".join([*L, "", "Raw per-seed cells: the JSON next to this file.", ""])
    same = {k: [r["dense_same_epochs"][k] for r in finetune] for k in ("test", "val")}
    L += [
        "",
        f"## C. 0.98 vs a dense model trained for the same total epochs "
        f"({args.dense_epochs + args.finetune_epochs})",
        "",
        f"Dense, {args.dense_epochs + args.finetune_epochs} epochs: test {fmt(same['test'])}, "
        f"val {fmt(same['val'])}.",
        "",
    ]
    for split, data in (("test", ftest), ("val", fval)):
        best = max(ft_labels, key=lambda lab: statistics.mean(data[(lab, 0.98)]))
        gap = statistics.mean(same[split]) - statistics.mean(data[(best, 0.98)])
        L.append(
            f"- {split}: best at 0.98 = {best}, {gap:.2f} pt below the same-epochs dense model "
            + ("(≤ 1 pt: met)." if gap <= 1 else f"(> 1 pt: missed by {gap - 1:.2f} pt).")
        )
    if args.finetune_lr_factor == 1.0:
        L += ["", "### Notes", "", *NOTES]
    L += ["", "Raw per-seed cells: the JSON next to this file.", ""]
    return "\n".join(L)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--dense-epochs", type=int, default=10)
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--cache", default="/tmp/prunekit-reconstruction-cache")
    p.add_argument("--out", default="benchmarks/results/reconstruction.md")
    p.add_argument("--limit", type=int, default=None, help="training examples (smoke runs)")
    p.add_argument("--from-json", default=None, help="rewrite the report from a saved JSON")
    p.add_argument("--finetune-lr-factor", type=float, default=1.0, help="x the recipe lr")
    p.add_argument("--finetune-sparsities", type=float, nargs="+", default=FINETUNE_SPARSITIES)
    p.add_argument("--no-same-epochs-dense", action="store_true", help="skip part C")
    args = p.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        text = report(
            args,
            saved["oneshot"],
            saved["finetune"],
            saved["chosen"],
            saved["took"],
            saved["command"],
            saved["date"],
        )
        Path(args.out).write_text(text)
        print(text)
        return
    t0 = time.perf_counter()
    a = [(s, args.dense_epochs, args.cache, args.threads, args.limit) for s in args.seeds]
    # part A is cached next to the dense models, so a rerun with another fine-tune
    # budget does not repeat it
    key = f"oneshot_seeds{'-'.join(map(str, args.seeds))}_e{args.dense_epochs}_l{args.limit}.json"
    saved = Path(args.cache) / key
    if saved.exists():
        oneshot = json.loads(saved.read_text())
    else:
        oneshot = _pool(part_oneshot, a, args.jobs)
        saved.write_text(json.dumps(oneshot))
    chosen_label, chosen = choose(oneshot)
    print(f"part A done ({time.perf_counter() - t0:.0f} s); chosen: {chosen_label}", flush=True)
    b = [
        (
            s,
            args.dense_epochs,
            args.finetune_epochs,
            args.cache,
            args.threads,
            chosen,
            args.limit,
            args.finetune_lr_factor,
            tuple(args.finetune_sparsities),
            not args.no_same_epochs_dense,
        )
        for s in args.seeds
    ]
    finetune = _pool(part_finetune, b, args.jobs)
    took = time.perf_counter() - t0
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    date = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "oneshot": oneshot,
                "finetune": finetune,
                "chosen": chosen_label,
                "took": took,
                "command": command,
                "date": date,
            },
            indent=1,
        )
    )
    out.write_text(report(args, oneshot, finetune, chosen_label, took, command, date))
    print(out.read_text())


if __name__ == "__main__":
    main()

"""Why did the latency allocation lose to Torch-Pruning on ResNet-20? One dense model per
seed, then fixed widths at a *predicted* 2x / 3x (no closed loop: latency does not
depend on the weights, and the same predictor serves every row), each fine-tuned exactly
like ``latency_target.py --part tp`` (BN recalibration, then 2 epochs on 5000 images):

- ``tp<r>``: Torch-Pruning's uniform pruning at ratio ``r`` (``_common.tp_uniform``);
- ``<scoring>:<scheme>``: our widths and kept units, with unit scores
  ``producers`` (the criterion on the producers' filters, the first default),
  ``folded`` (the same on the BN-folded model) or ``deployed``
  (``prunekit.latency.scores.group_scores``' second default: BN folded, producers and
  consumers) or ``tplike`` (``scoring="tplike"``, the default now: raw filters, BN gammas and
  consumers, the layers Torch-Pruning's magnitude importance reduces a group over;
  the rows recorded before it moved into prunekit used a copy here that gives the same
  scores on ResNet-20) and widths ``uniform`` (the same fraction in every group,
  ``allocate.uniform``) or the greedy allocation weighted ``group`` / ``layers`` /
  ``touched`` (``allocate.group_weights``).

Usage: ``python benchmarks/latency_alloc_ablation.py SEED ITEM@K[,ITEM@K...] --json F``
(e.g. ``0 tp0.475@2,deployed:uniform@2``); ``--render F... --out MD`` renders.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import latency_dense, tp_uniform
from latency_target import PART_BUDGETS, finetune

from prunekit.evaluation import accuracy
from prunekit.latency import LatencyModel
from prunekit.latency.allocate import allocate, group_weights, uniform
from prunekit.latency.target import group_scores
from prunekit.pruning.criteria import Context
from prunekit.surgery.fold import fold_batchnorm


def run(seed: int, items: list[str], out: Path, cache: Path) -> None:
    cfg, data, dense, _ = latency_dense("resnet20", seed, cache=cache, **PART_BUDGETS["tp"])
    shape = tuple(data.input_shape)
    rows = [{"kind": "dense", "seed": seed, "acc": accuracy(dense, data.test.x, data.test.y)}]
    lm = LatencyModel(dense, shape, batch_size=64)
    lm.calibrate()
    ctx = Context(data=(data.val.x[:512], data.val.y[:512]))
    scores = {
        "producers": lambda: group_scores(dense, lm, "magnitude", ctx, scoring="producers"),
        "folded": lambda: group_scores(
            fold_batchnorm(dense)[0], lm, "magnitude", ctx, scoring="producers"
        ),
        "deployed": lambda: group_scores(dense, lm, "magnitude", ctx, scoring="deployed"),
        "tplike": lambda: group_scores(dense, lm, "magnitude", ctx, scoring="tplike"),
    }
    dp = lm.predict(lm.full)
    for item in items:
        what, k = item.split("@")
        k = float(k)
        t0 = time.time()
        widths = None
        if what.startswith("tp") and ":" not in what:
            m = tp_uniform(dense, float(what[2:]), shape)
        else:
            scoring, scheme = what.split(":")
            s = scores[scoring]()
            if scheme == "uniform":
                widths = uniform(lm, dp / k)
            else:
                widths = allocate(lm, s, dp / k, weights=group_weights(lm.groups, scheme)).widths
            m = lm.with_widths(dense, widths, s)
        acc = finetune(m, cfg, data, recalibrate=True)
        rows.append(
            {
                "kind": "ablation",
                "seed": seed,
                "target": k,
                "item": what,
                "predicted_speedup": dp / lm.predict(widths) if widths else None,
                "widths": widths,
                "acc": acc,
                "seconds": time.time() - t0,
                "loadavg": os.getloadavg()[0],
            }
        )
        out.write_text(json.dumps({"part": "ablation", "rows": rows}, indent=1))
        print(json.dumps(rows[-1]), flush=True)


def render(files: list[Path], out: Path, command: str) -> None:
    lines = [
        "# ResNet-20 latency allocation vs Torch-Pruning: ablation",
        "",
        f"Command: `{command}`  ",
        "Fashion-MNIST, 5000 training images, 4 dense epochs, then every row: BN "
        "recalibration + 2 fine-tune epochs (the `--part tp` budget), 2000 test images. "
        "Widths at a *predicted* speed-up (batch 64, one thread); tp<r> = Torch-Pruning "
        "uniform ratio r (0.475 and 0.58 are the ratios bisected to 2x and 3x measured "
        "in latency_followup.md).",
        "",
        "| seed | target | item | predicted | acc | - dense | widths |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in files:
        rows = json.loads(Path(f).read_text())["rows"]
        dense = {r["seed"]: r["acc"] for r in rows if r["kind"] == "dense"}
        for r in sorted(
            (r for r in rows if r["kind"] == "ablation"), key=lambda r: (r["seed"], r["target"])
        ):
            pred = f"{r['predicted_speedup']:.2f}x" if r["predicted_speedup"] else "-"
            w = ", ".join(map(str, r["widths"])) if r["widths"] else "-"
            lines.append(
                f"| {r['seed']} | {r['target']:g}x | {r['item']} | {pred} | {r['acc']:.4f} | "
                f"{100 * (r['acc'] - dense[r['seed']]):+.1f} pt | {w} |"
            )
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("seed", type=int, nargs="?")
    p.add_argument("items", nargs="?")
    p.add_argument("--json", type=Path)
    p.add_argument("--cache", type=Path, default=Path("/tmp"))
    p.add_argument("--render", type=Path, nargs="+")
    p.add_argument("--out", type=Path)
    p.add_argument("--command", default="")
    a = p.parse_args()
    if a.render:
        render(a.render, a.out, a.command)
    else:
        run(a.seed, a.items.split(","), a.json, a.cache)


if __name__ == "__main__":
    sys.exit(main())

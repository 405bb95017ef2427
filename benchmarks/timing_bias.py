"""Why weight-level (masked, dense-shaped) rows of the default comparison reported a
batch-1 "real speed-up" (issue #15 item 7): replay comparison cells and time them with
the old and the new interleaved settings.

Cells: LeNet-300-100 / Fashion-MNIST, one dense model shared by every cell (as the
comparison does), each weight-level method at each sparsity run through
``pipeline.run`` (prune, fine-tune, then the dense/pruned timing of ``evaluate``) and
timed at batch 1 with both settings below: one inside ``run`` right after the
fine-tune (as in the comparison), the other right after it, alternating over cells:

- ``old``: 5 warm-up rounds, one forward per sample, no null control (the settings
  the comparison used);
- ``new``: 5 warm-up rounds and at least 50 ms of them, one forward per sample, and a
  deep copy of the dense model in the same loop (null control). (Earlier replays with
  samples of >= 2 ms windows, then medians of >= 5 forwards within >= 1 ms:
  timing_bias_run1.md, timing_bias_run2.md.)

A masked model is the same computation as its dense model, so any "faster" verdict
(``prunekit.experiments.claims``) is a false claim. The raw samples of one old-style
cell are printed so the cause can be seen.

Usage: ``python benchmarks/timing_bias.py --out benchmarks/results/timing_bias.md``
(default threads, as a user's ``prunekit compare`` runs).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import prunekit.evaluation.interleaved as il
import prunekit.pipeline as pipeline
from prunekit import RunConfig
from prunekit.experiments import claims
from prunekit.pipeline import dataset_for, dense_config, train_dense

FASHION = "/usr/share/datasets/fashion-mnist"
METHODS = ("magnitude", "gmp", "random", "wanda", "sparsegpt")
SPARSITIES = (0.5, 0.98)
SETTINGS = {
    "old": dict(warmup_s=0.0, min_time_s=0.0, null_control=False, per_call_median=False),
    "new": dict(),  # the defaults of speedup_with_spread
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=10)  # the default comparison's
    p.add_argument("--db", type=Path, help="a stored comparison's results.sqlite to read")
    p.add_argument("--only-db", action="store_true", help="append the --db table to --out")
    a = p.parse_args()
    if a.only_db:
        with a.out.open("a") as f:
            f.write("\n".join(stored_claims(a.db)) + "\n")
        return
    base = dict(
        model="lenet300",
        dataset="fashion-mnist",
        seed=0,
        epochs=2,
        finetune_epochs=1,
        limit=3000,
        test_limit=2000,
        data_dir=FASHION,
        latency_batch_sizes=[1, 64],
        latency_repeats=a.repeats,
        noise_sigmas=[],
        noise_densities=[],
    )
    data = dataset_for(RunConfig(method="magnitude", sparsity=0.5, **base))
    dense, _, sec = train_dense(
        dense_config(RunConfig(method="magnitude", sparsity=0.5, **base)), data
    )
    original = il.speedup_with_spread
    rows, raw = [], {}
    started = time.time()
    cells = [(m, sp) for m in METHODS for sp in SPARSITIES]
    for i, (method, sp) in enumerate(cells):
        # The comparison times a cell right after its fine-tune: one setting times it
        # there (inside pipeline.run), the other right after; which one goes first
        # alternates over the cells so that neither always gets the fresh state.
        first, second = ("old", "new") if i % 2 == 0 else ("new", "old")
        seen: list = []
        orig_samples = il.model_samples

        def recording(*args, _orig=orig_samples, _seen=seen, **kwargs):
            out = _orig(*args, **kwargs)
            _seen.append(out)
            return out

        il.model_samples = recording
        pipeline.speedup_with_spread = functools.partial(original, **SETTINGS[first])
        try:
            cfg = RunConfig(method=method, sparsity=sp, **base)
            run = pipeline.run(cfg, dense=(dense, sec), data=data, progress=False)
        finally:
            il.model_samples = orig_samples
            pipeline.speedup_with_spread = original
        results = {first: run.result}
        results[second] = original(
            run.model, dense, tuple(data.input_shape), [1], repeats=a.repeats, **SETTINGS[second]
        )
        if first == "old" and not raw:
            raw = seen[0]
        for name in SETTINGS:
            r = results[name]
            s = claims.speedup({"kind": "method", **r})
            spread = r["timing"]["spread"]["1"]
            rows.append(
                {
                    "method": method,
                    "sparsity": sp,
                    "settings": name,
                    "position": "first" if name == first else "second",
                    "value": s.value,
                    "iqr": spread["speedup_iqr"],
                    "null": spread.get("null_iqr"),
                    "verdict": s.verdict,
                    "load": os.getloadavg()[0],
                    "busy": r["timing"]["busy"],
                }
            )
            print(rows[-1], flush=True)
        render(a.out, rows, raw, time.time() - started, " ".join(sys.argv), a.repeats, a.db)


def stored_claims(db: Path) -> list[str]:
    """The weight-level cells of a stored comparison (``results.sqlite``) whose batch-1
    timing was claimed 'faster' by the old rule (IQR above 1, >= 1.05x): both models'
    latency quartiles and the dense drift, to see which model moved."""
    import json
    import sqlite3

    con = sqlite3.connect(db)
    rows = con.execute(
        "select method, sparsity, granularity, result_json from runs order by finished_at"
    ).fetchall()
    lines = [
        "",
        f"Weight-level cells of the stored comparison {db} that the old rule called faster "
        "(batch 1; microseconds):",
        "",
        "| method | sparsity | speed-up | per-repeat IQR | dense IQR | masked IQR | dense drift | busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, sp, gran, blob in rows:
        r = json.loads(blob) if blob else {}
        if gran != "weight" or "speedup" not in r:
            continue
        t = r["timing"]["spread"]["1"]
        value, iqr = r["speedup"]["1"], t["speedup_iqr"]
        if not (iqr[0] > 1.0 and value >= 1.05):
            continue
        d, m = t["latency_ms_dense_iqr"], t["latency_ms_iqr"]
        lines.append(
            f"| {method} | {sp:g} | {value:.2f}x | {iqr[0]:.2f}-{iqr[1]:.2f} | "
            f"{1000 * d[0]:.0f}-{1000 * d[1]:.0f} | {1000 * m[0]:.0f}-{1000 * m[1]:.0f} | "
            f"{t['dense_drift']:+.2f} | {r['timing']['busy']} |"
        )
    return lines


def render(out: Path, rows, raw, seconds, command, repeats, db: Path | None = None) -> None:
    lines = [
        "# Timing bias of masked models (batch-1 speed-up of dense-shaped models)",
        "",
        f"Command: `python {command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads (the default, as `prunekit compare`), "
        f"{os.cpu_count()} CPUs shared with other jobs; {seconds / 60:.1f} min; "
        f"{repeats} repeats per timing (the default comparison's). Load average (1 min) "
        f"during the cells: {min(r['load'] for r in rows):.1f}-{max(r['load'] for r in rows):.1f}.",
        "",
        "Every model here is masked (zeros inside dense shapes): it cannot be faster than "
        "its dense model, so a 'faster' verdict is a false claim.",
        "",
        "| settings | cells | false 'faster' | 'slower' | within noise | median speed-up | "
        "speed-ups [min-max] |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in SETTINGS:
        rs = [r for r in rows if r["settings"] == name]
        v = [r["value"] for r in rs]
        count = {
            k: sum(r["verdict"] == k for r in rs) for k in ("faster", "slower", "within noise")
        }
        lines.append(
            f"| {name} | {len(rs)} | {count['faster']} | {count['slower']} | "
            f"{count['within noise']} | {statistics.median(v):.3f}x | "
            f"{min(v):.2f}-{max(v):.2f}x |"
        )
    lines += [
        "",
        "| method | sparsity | settings | timed | batch-1 speed-up | per-repeat IQR | null "
        "control IQR (dense / copy) | verdict | load | busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        null = f"{r['null'][0]:.2f}-{r['null'][1]:.2f}" if r["null"] else "-"
        lines.append(
            f"| {r['method']} | {r['sparsity']:g} | {r['settings']} | {r['position']} | "
            f"{r['value']:.3f}x | "
            f"{r['iqr'][0]:.2f}-{r['iqr'][1]:.2f} | {null} | {r['verdict']} | "
            f"{r['load']:.1f} | {r['busy']} |"
        )
    if raw:
        lines += [
            "",
            f"Raw batch-1 samples of the first cell with the old settings (microseconds, in "
            f"repeat order): dense {[round(1000 * x) for x in raw['dense']]}; pruned "
            f"{[round(1000 * x) for x in raw['pruned']]}.",
        ]
    if db is not None:
        lines += stored_claims(db)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

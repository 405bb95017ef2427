"""``prunekit compare --int8``: pruning alone vs int8 alone vs both at equal model bytes,
and what ``--int8`` costs per cell.

Runs the packaged default comparison narrowed to ``--only`` / ``--sparsities`` /
``--seeds`` with ``--int8`` (exactly ``prunekit compare --int8 ...``; resumable), writes
its report, and prints into ``--write``:

- the report's int8 part (the generated equal-bytes sentences and both int8 tables);
- the cost of ``--int8``: per cell, the seconds spent on it (float + int8 export,
  calibration, three test-set passes, the interleaved ORT timing; ``int8.seconds`` in
  each result) beside the cell's wall time, measured in the same process, and the
  projection to the default comparison (its planned cells x the median int8 seconds
  per cell).

Usage:
  python benchmarks/compare_int8.py --out runs/compare-int8 --only magnitude,l1-filter \\
      --sparsities 0.5,0.8,0.9,0.95,0.98 [--seeds 0] --write benchmarks/results/compare_int8.md
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from prunekit.experiments.plan import load_config, plan, restrict
from prunekit.experiments.report import write_report
from prunekit.experiments.runner import compare
from prunekit.experiments.store import read_rows


def _csv(text: str | None, cast) -> list | None:
    return [cast(p) for p in text.split(",") if p.strip()] if text else None


def _section(report: str, start: str, stop: str) -> str:
    i = report.index(start)
    j = report.index(stop, i + len(start)) if stop in report[i + len(start) :] else len(report)
    return report[i:j].strip()


def _load(rows: list[dict]) -> str:
    """The 1-minute load average when each cell's int8 timing began: median (range)."""
    loads = [
        r["int8"]["timing"]["loadavg_before"][0]
        for r in rows
        if r["int8"]["timing"].get("loadavg_before")
    ]
    if not loads:
        return "not recorded"
    return f"median {statistics.median(loads):.1f} ({min(loads):.1f}-{max(loads):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/compare-int8")
    ap.add_argument("--only", default="magnitude,l1-filter")
    ap.add_argument("--sparsities", default="0.5,0.8,0.9,0.95,0.98")
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--write", default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    base = load_config(None)
    cfg = restrict(
        base,
        only=_csv(args.only, str),
        sparsities=_csv(args.sparsities, float),
        seeds=_csv(args.seeds, int),
        int8=True,
    )
    outcome = compare(
        cfg,
        args.out,
        config_yaml=yaml.safe_dump(asdict(cfg), sort_keys=True),
        progress=False,
    )
    md, _ = write_report(args.out)
    wall = time.perf_counter() - t0
    rows = [r for r in read_rows(args.out) if r["status"] == "ok" and r.get("int8")]
    report = md.read_text()

    lines = [
        "# `prunekit compare --int8`: pruning alone vs int8 alone vs both at equal bytes",
        "",
        "Command: `"
        + " ".join(shlex.quote(a) for a in [sys.executable.split("/")[-1], *sys.argv])
        + "`",
        "",
        "The same as `prunekit compare --int8"
        + "".join(
            f" --{k} {v}"
            for k, v in (
                ("only", args.only),
                ("sparsities", args.sparsities),
                ("seeds", args.seeds),
            )
            if v
        )
        + f" --out {args.out}` (the packaged default config, LeNet-300-100 / Fashion-MNIST, "
        f"its budget and evaluation settings): {outcome.planned} cells ({outcome.ran} run by this "
        f"invocation, {wall:.0f} s with the report; the others resumed from the store), "
        f"{sum(r['status'] == 'failed' for r in read_rows(args.out))} failed; the cells' wall "
        f"time summed: {sum(r['wall_seconds'] for r in rows):.0f} s.",
        "",
        _section(report, "## At equal model bytes", "## Accuracy (test) per method"),
        "",
        _section(report, "## Pruning vs int8 vs both", "## Accuracy vs sparsity"),
        "",
    ]
    # -- cost of --int8 -----------------------------------------------------------------
    per_cell = [
        (r["method"], r["sparsity"], r["seed"], r["int8"]["seconds"], r["wall_seconds"])
        for r in rows
    ]
    int8_s = [c[3] for c in per_cell]
    frac = [c[3] / c[4] for c in per_cell if c[4]]
    default_cells = len(plan(load_config(None)))
    med = statistics.median(int8_s)
    lines += [
        "## What `--int8` costs",
        "",
        "| method | sparsity | seed | int8 seconds | cell wall seconds (with int8) | int8 share |",
        "|---|---|---|---|---|---|",
        *(
            f"| {m} | {s:g} | {seed} | {q:.2f} | {w:.2f} | {q / w:.0%} |"
            for m, s, seed, q, w in per_cell
        ),
        "",
        f"int8 seconds per cell: median {med:.2f} s (min {min(int8_s):.2f}, max "
        f"{max(int8_s):.2f}); share of a cell's wall time (same process, same load): median "
        f"{statistics.median(frac):.0%}, max {max(frac):.0%}. The default comparison plans "
        f"{default_cells} cells: at this load `--int8` would add about {default_cells} x "
        f"{med:.2f} = {default_cells * med:.0f} s to it; at any load, about the share above "
        f"of its cells' time (1-minute load average as the cells' int8 timings began: {_load(rows)}; 2 cores).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        Path(args.write).write_text(text)


if __name__ == "__main__":
    main()

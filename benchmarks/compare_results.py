"""Write benchmarks/results/default_comparison.md from a `prunekit compare` directory.

Usage: python benchmarks/compare_results.py DIR "COMMAND THAT PRODUCED DIR" ["NOTE"]

Every number comes from DIR/results.sqlite (the rows the run stored); nothing is typed in.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from prunekit.experiments.plan import load_config, plan
from prunekit.experiments.store import read_rows
from prunekit.experiments.summary import summary_matrix
from prunekit.experiments.tables import markdown_table, method_table


def main() -> None:
    out, command = Path(sys.argv[1]), sys.argv[2]
    note = sys.argv[3] if len(sys.argv) > 3 else ""
    target = Path("benchmarks/results/default_comparison.md")
    rows = read_rows(out)
    planned = len(plan(load_config()))
    started = min(r["finished_at"] - (r["wall_seconds"] or 0) for r in rows)
    span = max(r["finished_at"] for r in rows) - started
    cell_s = sum(r["wall_seconds"] or 0 for r in rows)
    n_ok = sum(r["status"] == "ok" for r in rows)
    load = os.getloadavg()
    lines = [
        "# Default comparison (LeNet-300-100 / Fashion-MNIST)",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d', time.localtime(started))}  ",
        f"Cells stored: {len(rows)} of {planned} planned ({n_ok} ok, {len(rows) - n_ok} failed)  ",
        f"Wall time from the first cell's start to the last row: {span:.0f} s "
        f"(sum of per-cell wall times {cell_s:.0f} s)  ",
        f"Machine: {os.cpu_count()} CPU cores, shared; load average when this file was written "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min).",
        "",
        *([note, ""] if note else []),
        "## Test accuracy per method and target sparsity",
        "",
        markdown_table(*summary_matrix(rows)),
        "",
        "## Strengths and weaknesses (generated from the numbers)",
        "",
        markdown_table(*method_table(rows, None), code_last=True),
        "",
    ]
    target.write_text("\n".join(lines))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

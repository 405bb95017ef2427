"""Pictures of what pruning did, on the default comparison's model, data and budget, for
the documentation (docs/guides/pictures.md shows them).

Usage: python benchmarks/pictures.py [--out DIR] [--sparsity 0.9]

Runs ``prunekit compare`` with the packaged default config narrowed to one sparsity
and no peers (every registered method, the same dense model and budget), then writes
the report's pictures (``prunekit.experiments.pictures``) to
``benchmarks/results/pictures/*.png`` and ``benchmarks/results/pictures.md`` (the
command, date and the accuracy of each method at that sparsity, from the stored rows).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import yaml

from prunekit.docsite import method_slug
from prunekit.experiments import compare, read_rows
from prunekit.experiments.pictures import PICTURES, chosen_rows, make_pictures
from prunekit.experiments.plan import default_config_text, load_config, restrict
from prunekit.experiments.summary import summary_matrix
from prunekit.experiments.tables import markdown_table
from prunekit.visualize import input_connections_figure, save_png

RESULTS = Path("benchmarks/results")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/pictures", help="comparison directory")
    ap.add_argument("--sparsity", type=float, default=0.9)
    args = ap.parse_args()
    cfg = restrict(load_config(), sparsities=[args.sparsity])
    cfg = replace(cfg, methods=tuple(m for m in cfg.methods if not m.peer))
    t0 = time.time()
    outcome = compare(cfg, args.out, config_yaml=default_config_text(), progress=False)
    rows = read_rows(args.out)
    pictures = make_pictures(rows, args.sparsity)
    (RESULTS / "pictures").mkdir(parents=True, exist_ok=True)
    for name, png in pictures.items():
        (RESULTS / "pictures" / f"{name}.png").write_bytes(png)
    # One first-layer image per method, for its page in the docs (docsite.method_page).
    (RESULTS / "pictures" / "methods").mkdir(exist_ok=True)
    _, chosen = chosen_rows(rows, args.sparsity)
    for method, row in chosen.items():
        conn = row.get("input_connections")
        if conn and conn.get("kind") == "input":
            fig = input_connections_figure({method: conn})
            save_png(fig, RESULTS / "pictures" / "methods" / f"{method_slug(method)}.png")
    header, body = summary_matrix(rows)
    command = "python benchmarks/pictures.py " + " ".join(sys.argv[1:])
    lines = [
        "# Pictures of what pruning did (default comparison's model, data and budget)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {time.strftime('%Y-%m-%d')}; {len(rows)} cells stored (sum of their wall times "
        f"{sum(r['wall_seconds'] or 0 for r in rows):.0f} s), {outcome.ran} of them run "
        f"by this invocation ({outcome.failed} failed, {time.time() - t0:.0f} s; a rerun on the "
        "same --out resumes).  ",
        f"Config: the packaged default (`{yaml.safe_load(default_config_text())['name']}`), "
        f"sparsity {args.sparsity:g} only, no peers.",
        "",
        "## Test accuracy at this sparsity",
        "",
        markdown_table(header, body),
        "",
        "## Pictures",
        "",
    ]
    lines += [f"- `{RESULTS}/pictures/{n}.png`: {c}" for n, c in PICTURES if n in pictures]
    lines += [f"- `{RESULTS}/pictures/methods/<method>.png`: each method's first-layer image"]
    (RESULTS / "pictures.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""``prunekit report DIR``: ``report.md`` + a self-contained ``report.html`` from the
comparison's SQLite rows (plots are functions of that table, nothing else).

This file assembles the page: the introduction (coverage, versions, how noise is
judged), the tables (:mod:`.tables`) and the plots (:mod:`.plots`, and the pictures of
what pruning did, :mod:`.pictures`). The PNGs go to ``DIR/plots/`` for the Markdown and
are embedded as base64 ``data:`` URIs in the HTML, so the file opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

from . import claims, int8report
from .pictures import PICTURES, make_pictures
from .plots import PLOTS, make_plots
from .store import planned_cells, read_configs, read_rows
from .summary import ok, summary_matrix
from .tables import equal_cost_tables, html_table, markdown_table, method_table, runs_table

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;
padding:3px 6px;vertical-align:top}th{background:#f0f0f0}code{font-size:11px}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}h2{margin-top:1.5em}"""


def write_report(out: str | Path) -> tuple[Path, Path]:
    """Write ``DIR/report.md`` (+ ``DIR/plots/*.png``) and ``DIR/report.html``."""
    out = Path(out)
    rows = read_rows(out)
    configs = read_configs(out)
    import yaml

    heat, config_path = None, None
    for _, text, path in configs:
        data = yaml.safe_load(text)
        heat = data.get("heatmap_sparsity", heat) if isinstance(data, dict) else heat
        config_path = path
    plots = make_plots(rows, heat)
    plots.update(make_pictures(rows, heat))  # what pruning did (experiments/pictures.py)
    (out / "plots").mkdir(exist_ok=True)
    for name, png in plots.items():
        (out / "plots" / f"{name}.png").write_bytes(png)
    n_ok, n_fail = len(ok(rows)), sum(r["status"] == "failed" for r in rows)
    versions = sorted(
        {
            f"prunekit {r['prunekit_version']}, torch {r['torch_version']}"
            for r in ok(rows)
            if r.get("prunekit_version")
        }
    )
    models = sorted({f"{r['model']} / {r['dataset']}" for r in rows})
    planned = planned_cells(out)
    if planned is None:
        coverage = f"{len(rows)} cells stored (the plan was not recorded)"
    else:
        held = sum(r["cell_id"] in planned for r in rows)
        coverage = f"{held} of {len(planned)} planned cells" + (
            f" (partial: {len(planned) - held} not run yet)" if held < len(planned) else ""
        )
    n_busy = claims.any_busy(rows)
    noise = (
        f"A ranking or speed-up is stated only where it exceeds its uncertainty "
        f"({claims.Z:g} standard errors of the accuracy gap: binomial sampling error of the "
        f"test set and the spread over seeds; for speed-ups, the interquartile range of the "
        f"per-repeat interleaved timing ratios dense / pruned, whose median is the speed-up "
        f"shown), otherwise it says 'within noise'. "
        f"Weight-level methods are ranked at equal sparsity, neuron-level methods also at "
        f"equal parameter count, MACs and measured speed-up; runs without fine-tuning "
        f"(one-shot) only among themselves."
        + (
            f" {n_busy} of {n_ok} ok runs were timed while the machine was busy (load from "
            f"other work or drifting dense timings): their latencies are not reliable."
            if n_busy
            else ""
        )
    )
    intro = (
        f"{coverage}: {len(rows)} runs ({n_ok} ok, {n_fail} failed) of {', '.join(models)}; "
        f"{len({r['seed'] for r in rows})} seed(s); {'; '.join(versions)}. "
        f"Config hash(es): {', '.join(h for h, _, _ in configs)}. "
        f"Every method starts from the same dense model and gets the same fine-tuning "
        f"budget; the dense row is trained for the same total epochs. {noise}"
    )
    sections = [
        ("Accuracy (test) per method and target sparsity", summary_matrix(rows), False),
        (
            "Strengths and weaknesses (generated from the numbers)",
            method_table(rows, config_path),
            True,
        ),
        ("Every run", runs_table(rows), True),
    ]
    costs = [
        (
            f"Neuron-level methods at equal {axis} (test accuracy; * = top group within noise)",
            (h, b),
            False,
        )
        for axis, h, b in equal_cost_tables(rows)
    ]
    sections = sections[:2] + costs + sections[2:]
    int8_text = ""
    if int8report.has_int8(rows):  # --int8: pruning vs int8 vs both at equal model bytes
        plots["accuracy_vs_bytes"] = int8report.bytes_plot(rows)
        (out / "plots" / "accuracy_vs_bytes.png").write_bytes(plots["accuracy_vs_bytes"])
        int8_text = " ".join(int8report.answer(rows))
        int8_sections = [
            (
                "Pruning vs int8 vs both at equal model bytes (test accuracy, mean ± se)",
                int8report.families_table(rows),
                False,
            ),
            (
                "int8 per run: bytes, accuracy, agreement, latency",
                int8report.cells_table(rows),
                False,
            ),
        ]
        sections = sections[:-1] + int8_sections + sections[-1:]
    md = [f"# prunekit comparison report\n\nGenerated {time.strftime('%Y-%m-%d %H:%M')}. {intro}\n"]
    if int8_text:
        md.append(
            f"## At equal model bytes: pruning alone, int8 alone or both?\n\n{int8_text}\n\n"
            f"{int8report.noise_note()}\n"
        )
    for title, (header, body), code in sections[:-1]:
        md.append(f"## {title}\n\n{markdown_table(header, body, code)}\n")
    for name, caption in PLOTS + PICTURES + int8report.PLOT:
        if name in plots:
            md.append(f"## {caption}\n\n![{caption}](plots/{name}.png)\n")
    title, (header, body), code = sections[-1]
    md.append(f"## {title}\n\n{markdown_table(header, body, code)}\n")
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))

    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>prunekit comparison report</title><style>{_CSS}</style></head><body>",
        f"<h1>prunekit comparison report</h1><p>{html.escape(intro)}</p>",
    ]
    if int8_text:
        parts.append(
            "<h2>At equal model bytes: pruning alone, int8 alone or both?</h2>"
            f"<p>{html.escape(int8_text)}</p><p>{html.escape(int8report.noise_note())}</p>"
        )
    for title, (header, body), code in sections[:-1]:
        parts.append(f"<h2>{html.escape(title)}</h2>{html_table(header, body, code)}")
    for name, caption in PLOTS + PICTURES + int8report.PLOT:
        if name in plots:
            b64 = base64.b64encode(plots[name]).decode()
            parts.append(
                f"<h2>{html.escape(caption)}</h2>"
                f"<img id='{name}' alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'>"
            )
    title, (header, body), code = sections[-1]
    parts.append(f"<h2>{html.escape(title)}</h2>{html_table(header, body, code)}</body></html>")
    html_path = out / "report.html"
    html_path.write_text("".join(parts))
    return md_path, html_path

"""``prunekit report DIR``: ``report.md`` + a self-contained ``report.html`` from the
comparison's SQLite rows (plots are functions of that table, nothing else).

Plots (matplotlib, Agg backend; PNGs in ``DIR/plots/`` for the Markdown, embedded as
base64 ``data:`` URIs in the HTML so the file opens anywhere, offline):

1. accuracy vs target sparsity: mean over seeds, band = ± one sample std, dense line;
2. accuracy vs effective MACs (MACs of nonzero weights, one sample, log axis);
3. robustness: mean accuracy over every input corruption vs sparsity (when reported);
4. batch-1 latency (relative to dense, timed interleaved) vs accuracy, with the Pareto front (no other point is both faster
   and more accurate);
5. per-layer sparsity of each method at one sparsity (heatmap).
"""

from __future__ import annotations

import base64
import html
import io
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

from . import claims
from .pictures import PICTURES, make_pictures
from .store import planned_cells, read_configs, read_rows
from .summary import (
    Row,
    by_cell,
    dense_latency_b1,
    dense_value,
    latency_b1,
    mean_std,
    method_notes,
    methods_in,
    ok,
    sparsities_in,
    summary_matrix,
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(methods: list[str]) -> dict[str, Any]:
    cmap = _plt().get_cmap("tab20")
    return {m: cmap(i % 20) for i, m in enumerate(m for m in methods if m != "dense")}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _dense_line(ax, value: float | None, label: str = "dense") -> None:
    if value is not None:
        ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)


def _curve_plot(rows: list[Row], key: str, ylabel: str, title: str) -> bytes | None:
    plt = _plt()
    table = by_cell(rows, key)
    if not table:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = _colors(methods_in(rows))
    for m in methods_in(rows):
        if m == "dense":
            continue
        pts = sorted((s, *mean_std(v)) for (mm, s), v in table.items() if mm == m)
        if not pts:
            continue
        xs, mu, sd = zip(*pts, strict=True)
        ax.plot(xs, mu, marker="o", color=colors[m], label=m)
        ax.fill_between(
            xs,
            [a - b for a, b in zip(mu, sd, strict=True)],
            [a + b for a, b in zip(mu, sd, strict=True)],
            color=colors[m],
            alpha=0.2,
        )
    _dense_line(ax, dense_value(rows, key))
    ax.set_xlabel("target sparsity (fraction of units of removal pruned)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    return _png(fig)


def _macs_plot(rows: list[Row]) -> bytes | None:
    plt = _plt()
    pts = [
        (r["method"], r["macs_effective"], r["accuracy"])
        for r in ok(rows)
        if r.get("macs_effective") is not None and r.get("accuracy") is not None
    ]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = _colors(methods_in(rows))
    for m in methods_in(rows):
        mine = sorted((x, y) for mm, x, y in pts if mm == m)
        if not mine:
            continue
        xs, ys = zip(*mine, strict=True)
        if m == "dense":
            ax.scatter(xs, ys, color="black", marker="*", s=120, label="dense", zorder=3)
        else:
            ax.plot(xs, ys, marker="o", linestyle="-", alpha=0.8, color=colors[m], label=m)
    ax.set_xscale("log")
    ax.set_xlabel("effective MACs per sample (nonzero weights, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs effective MACs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return _png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points that no other point beats on both (lower latency
    and higher accuracy), sorted by latency."""
    front: list[tuple[float, float]] = []
    for lat, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((lat, acc))
    return front


def _relative_latency(rows: list[Row]) -> list[Row]:
    """Rows with ``rel_lat`` = batch-1 latency as a fraction of dense's, from the row's
    interleaved speed-up where measured (robust to load drift between cells). A speed-up
    within its timing noise (or without a recorded spread) counts as 1: the front must
    not run through noise."""
    dense_ms = dense_latency_b1(rows)
    out = []
    for r in rows:
        up = claims.speedup(r, dense_ms)
        rel = None if up is None else (1.0 / up.value if up.significant else 1.0)
        out.append({**r, "rel_lat": rel})
    return out


def _pareto_plot(rows: list[Row]) -> bytes | None:
    plt = _plt()
    lat, acc = (
        by_cell(_relative_latency(rows), "rel_lat"),
        by_cell(rows, "accuracy"),
    )
    pts = {k: (statistics.fmean(lat[k]), statistics.fmean(acc[k])) for k in lat if k in acc}
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = _colors(methods_in(rows))
    for m in methods_in(rows):
        mine = [v for (mm, _), v in pts.items() if mm == m]
        if mine:
            xs, ys = zip(*mine, strict=True)
            ax.scatter(
                xs,
                ys,
                color="black" if m == "dense" else colors[m],
                marker="*" if m == "dense" else "o",
                s=80 if m == "dense" else 30,
                label=m,
            )
    front = pareto_front(list(pts.values()))
    fx, fy = zip(*front, strict=True)
    ax.step(fx, fy, where="post", color="red", linewidth=1.5, label="Pareto front")
    for (m, s), (x, y) in pts.items():
        if (x, y) in front:
            ax.annotate(f"{m} {s:g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(
        "batch-1 latency / dense latency (median, timed interleaved; 1 where within noise)"
    )
    ax.set_ylabel("test accuracy")
    ax.set_title("Latency vs accuracy (Pareto front in red)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return _png(fig)


def heatmap_data(
    rows: list[Row], target: float | None
) -> tuple[float | None, list[str], list[str], list[list[float]]]:
    """(sparsity used, methods, layers, values): per-layer sparsity of each method at the
    target sparsity closest to ``target`` (its first seed)."""
    sps = sparsities_in(rows)
    if not sps:
        return None, [], [], []
    s = min(sps, key=lambda x: abs(x - (target if target is not None else sps[len(sps) // 2])))
    chosen: dict[str, Row] = {}
    for r in sorted(ok(rows), key=lambda r: r["seed"]):
        if r["kind"] != "dense" and r["sparsity"] == s and r.get("layers"):
            chosen.setdefault(r["method"], r)
    layers = list(dict.fromkeys(name for r in chosen.values() for name in r["layers"]))
    methods = [m for m in methods_in(rows) if m in chosen]
    dense = {r["seed"]: r["layers"] for r in ok(rows) if r["kind"] == "dense" and r.get("layers")}
    values = [
        [layer_removed(chosen[m], layer, dense.get(chosen[m]["seed"]))[0] for layer in layers]
        for m in methods
    ]
    return s, methods, layers, values


def layer_removed(
    row: Row, layer: str, dense_layers: dict[str, Any] | None
) -> tuple[float, str | None]:
    """(fraction of the ORIGINAL layer's weights removed, "kept/original units" or None).

    A physically shrunk layer has no zeros left (its own sparsity is 0), so its removed
    fraction is 1 - weights now / weights of the original layer (``params_original``, or
    the dense row's layer), and its units are shown as kept / original."""
    info = (row.get("layers") or {}).get(layer)
    if info is None:
        return float("nan"), None
    dense_info = (dense_layers or {}).get(layer) or {}
    orig = info.get("params_original") or dense_info.get("params")
    if (row.get("shrunk") or "params_original" in info) and orig:
        removed = 1.0 - info.get("nonzero", info.get("params", 0)) / orig
        units_orig = (row.get("architecture_original") or {}).get(layer) or dense_info.get("units")
        kept = info.get("units")
        return removed, f"{kept}/{units_orig}" if kept is not None and units_orig else None
    units_orig = (row.get("architecture_original") or {}).get(layer)
    if row.get("shrunk") and units_orig and info.get("units") is not None:
        # No dense layer to compare weights with: the fraction of units removed.
        return 1.0 - info["units"] / units_orig, f"{info['units']}/{units_orig}"
    return info.get("sparsity", float("nan")), None


def _heatmap_plot(rows: list[Row], target: float | None) -> bytes | None:
    plt = _plt()
    s, methods, layers, values = heatmap_data(rows, target)
    if not methods:
        return None
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(layers), 1 + 0.4 * len(methods)))
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(layers)), layers)
    ax.set_yticks(range(len(methods)), methods)
    units = _heatmap_units(rows, s, methods, layers)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            kept = units[i][j]
            ax.text(
                j,
                i,
                f"{v:.2f}" + (f"\n{kept} units" if kept else ""),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v < 0.6 else "black",
            )
    fig.colorbar(im, ax=ax, label="fraction of the original layer's weights removed")
    ax.set_title(
        f"Per-layer weights removed at target sparsity {s:g} (shrunk layers: kept/original units)"
    )
    return _png(fig)


def _heatmap_units(
    rows: list[Row], s: float | None, methods: list[str], layers: list[str]
) -> list[list[str | None]]:
    """The kept/original units of each heatmap cell of a physically shrunk row."""
    dense = {r["seed"]: r["layers"] for r in ok(rows) if r["kind"] == "dense" and r.get("layers")}
    chosen: dict[str, Row] = {}
    for r in sorted(ok(rows), key=lambda r: r["seed"]):
        if r["kind"] != "dense" and r["sparsity"] == s and r.get("layers"):
            chosen.setdefault(r["method"], r)
    return [
        [layer_removed(chosen[m], layer, dense.get(chosen[m]["seed"]))[1] for layer in layers]
        for m in methods
    ]


PLOTS = (
    ("accuracy_vs_sparsity", "Accuracy vs sparsity (mean ± std over seeds; dense dashed)"),
    ("accuracy_vs_macs", "Accuracy vs effective MACs"),
    ("robustness", "Robustness: mean accuracy under input noise vs sparsity"),
    ("latency_pareto", "Latency vs accuracy: Pareto front"),
    ("layer_heatmap", "Per-layer weights removed by each method (shrunk layers: kept units)"),
)


def make_plots(rows: list[Row], heatmap_sparsity: float | None) -> dict[str, bytes]:
    """PNG bytes of every plot that has data, keyed by the names in ``PLOTS``."""
    made = {
        "accuracy_vs_sparsity": _curve_plot(
            rows, "accuracy", "test accuracy", "Accuracy vs sparsity"
        ),
        "accuracy_vs_macs": _macs_plot(rows),
        "robustness": _curve_plot(
            rows,
            "accuracy_corrupted_mean",
            "mean accuracy over noise corruptions",
            "Robustness: accuracy under Gaussian / salt-and-pepper noise",
        ),
        "latency_pareto": _pareto_plot(rows),
        "layer_heatmap": _heatmap_plot(rows, heatmap_sparsity),
    }
    return {k: v for k, v in made.items() if v is not None}


# -- tables ------------------------------------------------------------------------


def _compare_cmd(config_path: str | None, label: str) -> str:
    cfg = f" --config {config_path}" if config_path else ""
    return f"prunekit compare{cfg} --only {shlex.quote(label)}"


def method_table(rows: list[Row], config_path: str | None) -> tuple[list[str], list[list[str]]]:
    notes = method_notes(rows)
    header = ["method", "granularity", "strengths", "weaknesses", "reproduce"]
    body = [
        [
            m,
            n["granularity"] or "-",
            "; ".join(n["strengths"]) or "-",
            "; ".join(n["weaknesses"]) or "-",
            _compare_cmd(config_path, m),
        ]
        for m, n in notes.items()
    ]
    return header, body


def runs_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = [
        "method",
        "sparsity",
        "seed",
        "status",
        "accuracy",
        "achieved",
        "MACs eff.",
        "noise acc.",
        "latency b1 (ms)",
        "speed-up b1",
        "wall (s)",
        "reproduce",
    ]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    body = [
        [
            r["method"],
            f"{r['sparsity']:g}",
            str(r["seed"]),
            r["status"] if r["status"] == "ok" else f"failed: {r['error']}",
            f(r.get("accuracy"), ".4f"),
            f(r.get("achieved_sparsity"), ".4f"),
            f(r.get("macs_effective"), ",.0f"),
            f(r.get("accuracy_corrupted_mean"), ".4f"),
            f(latency_b1(r), ".4f"),
            _speedup_cell(r),
            f(r.get("wall_seconds"), ".1f"),
            r["command"],
        ]
        for r in rows
    ]
    return header, body


def _speedup_cell(r: Row) -> str:
    up = claims.speedup(r)
    if up is None:
        return "-"
    if up.reference:
        return "1x (reference)"
    verdict = {"no spread": "no spread"}.get(up.verdict, up.verdict)
    busy = ", busy" if up.busy else ""
    return f"{up.value:.2f}x ({verdict}{busy})"


def equal_cost_tables(rows: list[Row]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Neuron-level methods against each other at equal parameter count, MACs and
    measured speed-up: (axis, header, body); accuracy interpolated between measured
    points, '-' outside a method's range, '*' marks the top group (within noise)."""
    notes = method_notes(rows)
    neuron = [m for m, n in notes.items() if (n["level"], n["setting"]) == ("neuron", "fine-tuned")]
    out = []
    if len(neuron) < 2:
        return out
    for axis in claims.COST_AXES:
        entries = claims.equal_cost(rows, neuron, axis)
        if not entries:
            continue
        header = ["method", *[_cost_label(axis, e["cost"]) for e in entries]]
        body = []
        for m in neuron:
            cells = []
            for e in entries:
                v = e["values"].get(m)
                mark = " *" if m in e["top"] else ""
                cells.append("-" if v is None else f"{v.mean:.4f}{mark}")
            body.append([m, *cells])
        out.append((axis, header, body))
    return out


def _cost_label(axis: str, x: float) -> str:
    if axis == "measured speed-up":
        return f"{x:.2f}x"
    return f"{x:,.0f}"


def markdown_table(header: list[str], body: list[list[str]], code_last: bool = False) -> str:
    def cell(text: str, last: bool) -> str:
        text = str(text).replace("|", "\\|").replace("\n", " ")
        return f"`{text}`" if last and code_last and text not in ("", "-") else text

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(cell(c, i == len(row) - 1) for i, c in enumerate(row)) + " |"
        for row in body
    ]
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[str]], code_last: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for row in body:
        tds = []
        for i, c in enumerate(row):
            text = html.escape(str(c))
            last = code_last and i == len(row) - 1 and text not in ("", "-")
            tds.append(f"<td><code>{text}</code></td>" if last else f"<td>{text}</td>")
        trs.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


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
        f"test set and the spread over seeds; the interquartile range of the per-repeat "
        f"interleaved timing ratios for speed-ups), otherwise it says 'within noise'. "
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
    md = [f"# prunekit comparison report\n\nGenerated {time.strftime('%Y-%m-%d %H:%M')}. {intro}\n"]
    for title, (header, body), code in sections[:-1]:
        md.append(f"## {title}\n\n{markdown_table(header, body, code)}\n")
    for name, caption in PLOTS + PICTURES:
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
    for title, (header, body), code in sections[:-1]:
        parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(header, body, code)}")
    for name, caption in PLOTS + PICTURES:
        if name in plots:
            b64 = base64.b64encode(plots[name]).decode()
            parts.append(
                f"<h2>{html.escape(caption)}</h2>"
                f"<img id='{name}' alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'>"
            )
    title, (header, body), code = sections[-1]
    parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(header, body, code)}</body></html>")
    html_path = out / "report.html"
    html_path.write_text("".join(parts))
    return md_path, html_path

"""The comparison report's plots: PNG bytes, each a function of the SQLite rows alone.

Matplotlib with the Agg backend; :func:`make_plots` returns the PNGs of every plot that
has data, keyed by the names in :data:`PLOTS`:

1. accuracy vs target sparsity: mean over seeds, band = ± one sample std, dense line;
2. accuracy vs effective MACs (MACs of nonzero weights, one sample, log axis);
3. robustness: mean accuracy over every input corruption vs sparsity (when reported);
4. batch-1 latency (relative to dense, timed interleaved) vs accuracy, with the Pareto
   front (no other point is both faster and more accurate);
5. per-layer sparsity of each method at one sparsity (heatmap).
"""

from __future__ import annotations

import io
import statistics
from typing import Any

from . import claims
from .summary import (
    Row,
    by_cell,
    dense_latency_b1,
    dense_value,
    mean_std,
    methods_in,
    ok,
    sparsities_in,
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
        "batch-1 latency / dense latency (1 / median per-repeat speed-up, timed interleaved;"
        " 1 where within noise)"
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

"""Pictures of what pruning did (matplotlib; every function returns a ``Figure``).

- :func:`granularity_figure`: what one granularity removes from a small layer, drawn
  from the masks the registered granularity itself makes;
- :func:`input_connections` / :func:`input_connections_figure`: the surviving
  first-layer connections of each input element (pixel), drawn in the input's shape:
  which pixels a method keeps looking at;
- :func:`units_kept_figure`: per layer, the units a neuron method kept out of the
  original ones (a physically shrunk layer shows as fewer units, not as 0 % sparse);
- :func:`sparsity_steps_figure`: sparsity over the training steps of the sparsify
  phase (the pruning events; for ``l0`` also the expected sparsity ``1 - mean P(z != 0)``)
  and :func:`l0_gates_figure`: the histogram of L0 keep-probabilities at the pruning event;
- :func:`entropy_histogram_figure`: unit activation entropies of the entropy methods
  before and after their training term;
- :func:`noise_curves_figure`: accuracy per noise level (Gaussian sigma, salt-and-pepper p).

The ``result`` arguments are result.json dicts (or rows of ``prunekit compare``'s
store, which carry the same keys). :func:`figure_png` and :func:`save_png` write a
figure out and close it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

Result = Mapping[str, Any]
GRANULARITY_PICTURES = ("weight", "kernel", "nm", "neuron")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig, dpi: int = 100) -> bytes:
    """PNG bytes of ``fig`` (then closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def save_png(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` as PNG (then closed)."""
    path = Path(path)
    path.write_bytes(figure_png(fig, dpi))
    return path


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


# -- granularities -----------------------------------------------------------------


def granularity_masks(name: str, sparsity: float = 0.5, seed: int = 0) -> tuple[Any, Any]:
    """(|weights|, mask) of a small random layer pruned by magnitude under granularity
    ``name``: a Linear 6x8 (``kernel``: a Conv2d with 3x4 kernels of 3x3)."""
    from .pruning.granularity import GRANULARITIES

    torch.manual_seed(seed)
    layer = nn.Conv2d(4, 3, 3, bias=False) if name == "kernel" else nn.Linear(8, 6, bias=False)
    w = layer.weight.detach()
    masks = GRANULARITIES.get(name)({"layer": layer}, {"layer": w.abs()}, sparsity, "layer")
    return w.abs().numpy(), masks["layer.weight"].numpy()


def _tile_kernels(a: np.ndarray) -> np.ndarray:
    """(O, I, k, k) -> one image, kernels separated by a NaN gap."""
    o, i, k, _ = a.shape
    img = np.full((o * (k + 1) - 1, i * (k + 1) - 1), np.nan)
    for r in range(o):
        for c in range(i):
            img[r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k] = a[r, c]
    return img


_CAPTIONS = {
    "weight": "weight: any single weights",
    "kernel": "kernel: whole 3x3 kernels (connections)",
    "nm": "nm 2:4: 2 kept of every 4 inputs",
    "neuron": "neuron: whole output units (rows)",
}


def granularity_figure(name: str, sparsity: float = 0.5, seed: int = 0):
    """The layer's |w| with the pruned entries blanked (grey), under granularity ``name``
    at ``sparsity`` (``nm``: 2:4, i.e. 0.5)."""
    plt = _plt()
    w, mask = granularity_masks(name, sparsity, seed)
    kept = np.where(mask > 0, w, np.nan)
    img = _tile_kernels(kept) if w.ndim == 4 else kept
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    fig, ax = plt.subplots(figsize=(3.2, 2.6))
    ax.imshow(img, cmap=cmap, vmin=0)
    ax.set_title(_CAPTIONS.get(name, name), fontsize=9)
    ax.set_xlabel("inputs" if w.ndim == 2 else "input channels", fontsize=8)
    ax.set_ylabel("output units" if w.ndim == 2 else "filters", fontsize=8)
    if w.ndim == 4:  # white lines between kernels, so a gap does not read as a pruned entry
        k = w.shape[-1]
        for r in range(1, w.shape[0]):
            ax.axhline(r * (k + 1) - 1, color="white", linewidth=3)
        for c in range(1, w.shape[1]):
            ax.axvline(c * (k + 1) - 1, color="white", linewidth=3)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


# -- first-layer connections -------------------------------------------------------


def first_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first Linear or Conv2d of ``model`` in module order."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            return name, m
    return None


def input_connections(
    model: nn.Module,
    input_shape: tuple[int, ...],
    original_units: Mapping[str, int] | None = None,
) -> dict[str, Any] | None:
    """Surviving connections of each input element into the first layer.

    A Linear first layer that reads the flattened input gives, per input element, the
    number of its nonzero outgoing weights (over the layer's remaining units), in the
    input's shape ``(C, H, W)``; a Conv2d first layer gives the count per kernel
    position ``(C, kh, kw)`` over its filters. ``None`` when the model has no such layer.
    Returned as ``{"layer", "kind", "shape", "fan_out", "fan_out_original", "counts"}``
    (counts flat, ints), the form stored in result.json; ``original_units`` (layer ->
    units before a shrink) gives ``fan_out_original`` for a physically shrunk model."""
    found = first_layer(model)
    if found is None:
        return None
    name, m = found
    w = m.weight.detach()
    if isinstance(m, nn.Linear):
        if m.in_features != math.prod(input_shape):
            return None
        counts, shape, kind = (w != 0).sum(0), list(input_shape), "input"
    else:
        counts, shape, kind = (w != 0).sum(0), list(w.shape[1:]), "kernel"
    return {
        "layer": name,
        "kind": kind,
        "shape": shape,
        "fan_out": int(w.shape[0]),
        "fan_out_original": int((original_units or {}).get(name, w.shape[0])),
        "counts": [int(v) for v in counts.flatten()],
    }


def input_connections_figure(by_method: Mapping[str, Mapping[str, Any]], cols: int = 6):
    """One image per method: each pixel's surviving first-layer connections (channels
    summed), each image scaled to its own maximum so the pattern shows at any sparsity;
    the title gives the kept share of all connections and the pixels cut off entirely."""
    plt = _plt()
    items = [(m, c) for m, c in by_method.items() if c]
    rows, cols = _grid(len(items), cols)
    size = (1.9 * cols, 2.2 * rows) if len(items) > 1 else (2.6, 2.8)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (method, conn) in zip(axes.flat, items, strict=False):
        img = np.asarray(conn["counts"], dtype=float).reshape(conn["shape"]).sum(0)
        total = max(conn.get("fan_out_original") or conn["fan_out"], 1) * img.size
        ax.imshow(img, cmap="magma", vmin=0, vmax=max(float(img.max()), 1.0))
        ax.set_title(
            f"{method}\n{img.sum() / total:.1%} kept, {np.mean(img == 0):.0%} px cut",
            fontsize=8,
        )
    if len(items) > 1:
        fig.suptitle(
            "Surviving first-layer connections per input pixel (bright = most kept)", fontsize=10
        )
    return fig


# -- units kept --------------------------------------------------------------------


def units_kept(result: Result) -> dict[str, tuple[int, int]]:
    """``{layer: (kept units, original units)}``: from the shrunk architecture when the
    run removed units physically, else from the masks (units with a nonzero weight)."""
    arch, orig = result.get("architecture"), result.get("architecture_original")
    if arch and orig:
        return {n: (int(arch.get(n, 0)), int(u)) for n, u in orig.items()}
    layers = result.get("layers") or {}
    # A layer record without units_alive (a shrunk layer) has every unit alive.
    return {n: (int(v.get("units_alive", v["units"])), int(v["units"])) for n, v in layers.items()}


def units_kept_figure(results: Mapping[str, Result]):
    """Grouped bars: per layer, the fraction of units each method kept (label: kept/original)."""
    plt = _plt()
    data = {m: units_kept(r) for m, r in results.items()}
    data = {m: d for m, d in data.items() if d}
    layers = list(dict.fromkeys(n for d in data.values() for n in d))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(layers) * max(len(data), 1) / 2), 3.6))
    width = 0.8 / max(len(data), 1)
    for i, (method, d) in enumerate(data.items()):
        xs = [j + i * width for j, n in enumerate(layers) if n in d]
        fr = [d[n][0] / max(d[n][1], 1) for n in layers if n in d]
        bars = ax.bar(xs, fr, width, label=method)
        for b, n in zip(bars, [n for n in layers if n in d], strict=True):
            ax.annotate(
                f"{d[n][0]}/{d[n][1]}",
                (b.get_x() + b.get_width() / 2, b.get_height()),
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
            )
    ax.set_xticks([j + width * (len(data) - 1) / 2 for j in range(len(layers))], layers)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("units kept / original units")
    ax.set_title("Units kept per layer (removed units are gone from the saved model)")
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    return fig


# -- training traces ---------------------------------------------------------------


def sparsity_steps(result: Result) -> dict[str, list[tuple[float, float]]]:
    """``{"pruning events": [(step, sparsity)...]}`` (a step function) and, when the run
    has an L0 trace, ``{"expected (L0)": [(step, 1 - mean P(z != 0))...]}``; steps
    count from the start of the sparsify phase."""
    out: dict[str, list[tuple[float, float]]] = {}
    events = result.get("pruning_events") or []
    if events:
        out["pruning events"] = [(float(e["step"]), float(e["target"])) for e in events]
    trace = (result.get("objective_report") or {}).get("trace") or []
    if trace and "density" in trace[0]:
        out["expected (L0)"] = [(float(t["step"]), 1.0 - float(t["density"])) for t in trace]
    return out


def sparsity_steps_figure(results: Mapping[str, Result]):
    """Sparsity over the sparsify phase's steps: one line per distinct curve, labelled
    with every method that follows it (one-shot methods share theirs)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    curves = {m: sparsity_steps(r) for m, r in results.items()}
    end = max((x for c in curves.values() for pts in c.values() for x, _ in pts), default=0.0)
    lines: dict[tuple, list[str]] = {}
    for method, c in curves.items():
        for kind, pts in c.items():
            lines.setdefault((kind, tuple(pts)), []).append(
                method if kind == "pruning events" else f"{method} {kind}"
            )
    for (kind, pts), names in lines.items():
        xs, ys = zip(*pts, strict=True)
        label = ", ".join(names)
        if kind == "pruning events":  # held after the last event, to the longest trace
            ax.step([0.0, *xs, end], [0.0, *ys, ys[-1]], where="post", label=label)
        else:
            ax.plot(xs, ys, linestyle=":", label=label)
    ax.set_xlabel("training step of the sparsify phase")
    ax.set_ylabel("sparsity")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Sparsity over training steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def l0_gates_figure(results: Mapping[str, Result]):
    """Histogram of the L0 gates' keep-probabilities P(z != 0) at the pruning event
    (``objective_report.keep_prob_hist``), one line per method, log count axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for method, r in results.items():
        hist = (r.get("objective_report") or {}).get("keep_prob_hist")
        if not hist:
            continue
        edges, counts = hist["edges"], hist["counts"]
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        ax.step(centers, [max(c, 0.5) for c in counts], where="mid", label=method)
    ax.set_yscale("log")
    ax.set_xlabel("gate keep-probability P(z != 0)")
    ax.set_ylabel("gates")
    ax.set_title("L0 gates at the pruning event")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


# -- entropy -----------------------------------------------------------------------


def unit_entropies(result: Result) -> dict[str, list[float]]:
    """Per-unit entropies an entropy method recorded, all layers together:
    ``{"start"|"end": values}`` from its training term's ``objective_report`` (Gaussian H
    on training batches) and ``{"at_prune": values}`` from the entropy criterion's
    calibration at the pruning event (``criterion_report``, else the objective's copy)."""
    rep = result.get("objective_report") or {}
    sources = {
        "start": rep.get("start"),
        "end": rep.get("end"),
        "at_prune": (result.get("criterion_report") or {}).get("entropy") or rep.get("at_prune"),
    }
    out = {}
    for key, source in sources.items():
        units = (source or {}).get("units") or {}
        values = [v for layer in units.values() for v in layer]
        if values:
            out[key] = values
    return out


_ENTROPY_LABELS = {
    "start": "first regularized batch (Gaussian H)",
    "end": "last batches before pruning (Gaussian H)",
    "at_prune": "calibration at the pruning event (criterion)",
}


def entropy_histogram_figure(results: Mapping[str, Result], bins: int = 30):
    """One panel per method: histograms of its units' activation entropies (nats)."""
    plt = _plt()
    items = [(m, unit_entropies(r)) for m, r in results.items()]
    items = [(m, e) for m, e in items if e]
    rows, cols = _grid(len(items), 3)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat[len(items) :]:
        ax.axis("off")
    for ax, (method, ent) in zip(axes.flat, items, strict=False):
        for key, values in ent.items():
            ax.hist(values, bins=bins, alpha=0.5, label=_ENTROPY_LABELS[key])
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("unit entropy (nats)")
        ax.set_ylabel("units")
        ax.legend(fontsize=6)
    fig.suptitle("Unit activation entropies", fontsize=10)
    fig.tight_layout()
    return fig


# -- robustness --------------------------------------------------------------------


def noise_curves(result: Result) -> dict[str, list[tuple[float, float]]]:
    """``{"gaussian": [(sigma, acc)...], "saltpepper": [(p, acc)...]}``, each starting
    at level 0 with the clean accuracy."""
    out = {}
    clean = result.get("accuracy")
    for key in ("gaussian", "saltpepper"):
        levels = result.get(f"accuracy_{key}") or {}
        if levels:
            pts = sorted((float(k), float(v)) for k, v in levels.items())
            out[key] = ([(0.0, float(clean))] if clean is not None else []) + pts
    return out


def noise_curves_figure(results: Mapping[str, Result]):
    """Accuracy vs noise level, Gaussian and salt-and-pepper side by side, one line per
    method (give one result per method, e.g. all at the same sparsity)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), squeeze=False)
    for method, r in results.items():
        curves = noise_curves(r)
        for ax, key in zip(axes[0], ("gaussian", "saltpepper"), strict=True):
            if key in curves:
                xs, ys = zip(*curves[key], strict=True)
                style = dict(color="black", linestyle="--") if method == "dense" else {}
                ax.plot(xs, ys, marker="o", markersize=3, label=method, **style)
    for ax, label in zip(
        axes[0], ("Gaussian noise sigma", "salt-and-pepper density p"), strict=True
    ):
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle("Accuracy under input noise, per noise level", fontsize=10)
    return fig

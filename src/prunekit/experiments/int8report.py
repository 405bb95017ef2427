"""Pruning vs int8 vs both at equal model bytes: the report's part for ``--int8`` rows.

Three families of points, per model, from the rows' ``int8`` entries
(:mod:`prunekit.evaluation.int8`):

- *pruning alone*: each method's pruned model in float32 (test accuracy of the PyTorch
  model, bytes of its float ONNX), with the dense float32 model as its sparsity-0 end;
- *int8 alone*: the dense model quantized to int8 (int8 accuracy and bytes);
- *both*: each method's pruned model quantized to int8, with int8 alone as its
  sparsity-0 end.

Model bytes are the ONNX file gzip-compressed at level 9 (the ``size_bytes_gzip``
measure): a weight-level (masked) model keeps its dense shapes, and its ONNX file
stores the zeros, which only compression removes; a neuron-level model is physically
smaller (the raw bytes are in the table too).

Equal bytes. At the bytes of a measured point of one family, another family's accuracy
is interpolated linearly in log(bytes) between its two measured points around it
(never extrapolated; standard error: the larger of the two points'), as
:func:`prunekit.experiments.claims.equal_cost` does for neuron-level methods. Two
questions are answered: at the bytes of int8 alone, is int8 alone or pruning alone
(each method) more accurate; and at the bytes of each pruned + int8 point, is it more
accurate than pruning alone of the same method. A family is named more accurate only
when the gap exceeds ``claims.Z`` standard errors (binomial sampling error of the test
accuracy and the spread over seeds, :func:`claims.accuracy_se`); otherwise the sentence
says "within noise". Fine-tuned rows only (one-shot rows are another question).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from . import claims
from .claims import Estimate
from .summary import TOLERANCE, Row, ok

PRUNING, INT8, BOTH = "pruning alone", "int8 alone", "pruning + int8"
FAMILIES = (PRUNING, INT8, BOTH)
#: The report's plot of this part (name, caption), as ``plots.PLOTS``.
PLOT = (
    (
        "accuracy_vs_bytes",
        "Accuracy vs model bytes: pruning alone (solid), int8 alone (star), both (dashed)",
    ),
)


def _int8(row: Row) -> dict[str, Any] | None:
    q = row.get("int8")
    return q if isinstance(q, dict) and q.get("accuracy_int8") is not None else None


def int8_rows(rows: list[Row]) -> list[Row]:
    """The ok rows that carry int8 figures, fine-tuned or dense."""
    return [
        r
        for r in ok(rows)
        if _int8(r) and (r["kind"] == "dense" or claims.setting(r) == "fine-tuned")
    ]


# -- points of the three families --------------------------------------------------------


def _estimate(values: list[float], n: int | None) -> Estimate:
    return Estimate(statistics.fmean(values), claims.accuracy_se(values, n))


def family_points(
    rows: list[Row],
) -> dict[str, dict[tuple[str, str, float], tuple[float, Estimate]]]:
    """model -> {(family, method, sparsity): (mean gzip bytes, accuracy estimate over
    seeds)}. The dense model is the sparsity-0 point of every method's pruning-alone
    (float) and pruning + int8 (int8) curve, and int8 alone is ``(INT8, "dense", 0)``."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    size: dict[tuple, list[float]] = defaultdict(list)
    ns: dict[tuple, list[int]] = defaultdict(list)
    for r in int8_rows(rows):
        q = _int8(r)
        n = q.get("test_examples") or r.get("test_examples")
        for family, a, b in (
            (PRUNING, r.get("accuracy"), q.get("bytes_float_onnx_gzip")),
            (BOTH, q.get("accuracy_int8"), q.get("bytes_int8_onnx_gzip")),
        ):
            if a is None or b is None:
                continue
            key = (r["model"], family, r["method"], float(r["sparsity"]))
            acc[key].append(float(a))
            size[key].append(float(b))
            if n:
                ns[key].append(int(n))
    out: dict[str, dict] = defaultdict(dict)
    for key, values in acc.items():
        model, family, method, s = key
        est = _estimate(values, min(ns[key]) if ns.get(key) else None)
        out[model][(family, method, s)] = (statistics.fmean(size[key]), est)
    for pts in out.values():
        methods = sorted({m for (_, m, _) in pts if m != "dense"})
        dense_f, dense_q = (
            pts.pop((PRUNING, "dense", 0.0), None),
            pts.pop((BOTH, "dense", 0.0), None),
        )
        if dense_q is not None:
            pts[(INT8, "dense", 0.0)] = dense_q
        for m in methods:
            if dense_f is not None:
                pts[(PRUNING, m, 0.0)] = dense_f
            if dense_q is not None:
                pts[(BOTH, m, 0.0)] = dense_q
    return dict(out)


def _curve(pts: dict, family: str, method: str) -> list[tuple[float, Estimate]]:
    return sorted(
        ((b, e) for (f, m, _), (b, e) in pts.items() if f == family and m == method),
        key=lambda p: p[0],
    )


def at_bytes(curve: list[tuple[float, Estimate]], x: float) -> Estimate | None:
    """Accuracy of a family's curve at ``x`` bytes: interpolated in log(bytes) between
    its two measured points around ``x``, None outside their range."""
    return claims._interp(curve, x, log=True)


# -- the verdict -------------------------------------------------------------------------


def verdict(values: dict[str, Estimate]) -> str:
    """Which entry is more accurate, only beyond noise (``claims.top_group``)."""
    shown = ", ".join(f"{k} {v.mean:.4f}" for k, v in values.items())
    if len(values) < 2:
        return f"nothing to compare ({shown})"
    if any(v.se is None for v in values.values()):
        return f"no noise estimate, not claimed ({shown})"
    top = claims.top_group(values)
    rest = [k for k in values if k not in top]
    if not rest:
        return f"within noise ({shown})"
    if len(top) == 1:
        return f"{top[0]} is more accurate, beyond noise ({shown})"
    return f"{' and '.join(top)} (within noise of each other) are more accurate than {', '.join(rest)} ({shown})"


def _kb(x: float) -> str:
    return f"{x / 1000:,.1f} kB"


def equal_bytes(rows: list[Row]) -> list[dict[str, Any]]:
    """Every equal-bytes comparison (module docstring): per model and byte size, the
    accuracy of each family there, and the sentence."""
    out = []
    for model, pts in sorted(family_points(rows).items()):
        dense_f = next((b for (f, m, s), (b, _) in pts.items() if f == PRUNING and s == 0), None)
        methods = sorted({m for (f, m, _) in pts if f in (PRUNING, BOTH) and m != "dense"})
        q = pts.get((INT8, "dense", 0.0))
        if q is not None:
            x, est = q
            values = {INT8: est}
            for m in methods:
                e = at_bytes(_curve(pts, PRUNING, m), x)
                if e is not None:
                    values[f"{PRUNING} ({m})"] = e
            out.append(
                {"model": model, "bytes": x, "dense_bytes": dense_f, "at": INT8, "values": values}
            )
        for m in methods:
            for (f, mm, s), (x, est) in sorted(pts.items(), key=lambda kv: kv[0][2]):
                if f != BOTH or mm != m or s == 0:
                    continue
                values = {f"{BOTH} ({m}, s={s:g})": est}
                e = at_bytes(_curve(pts, PRUNING, m), x)
                if e is not None:
                    values[f"{PRUNING} ({m})"] = e
                out.append(
                    {
                        "model": model,
                        "bytes": x,
                        "dense_bytes": dense_f,
                        "at": BOTH,
                        "values": values,
                    }
                )
    for e in out:
        ratio = f", {e['bytes'] / e['dense_bytes']:.3f}x dense float32" if e["dense_bytes"] else ""
        where = "the int8 dense model's size" if e["at"] == INT8 else "a pruned + int8 model's size"
        if len(e["values"]) < 2:
            e["sentence"] = (
                f"{e['model']}, at {_kb(e['bytes'])}{ratio} ({where}): pruning alone did not "
                f"reach these bytes at the measured sparsities (not extrapolated)."
            )
        else:
            e["sentence"] = (
                f"{e['model']}, at {_kb(e['bytes'])}{ratio} ({where}): {verdict(e['values'])}."
            )
    return out


def answer(rows: list[Row]) -> list[str]:
    """The generated sentences answering "at equal bytes, which is more accurate":
    one at the int8 dense model's bytes, then one per method summing up its pruned +
    int8 points against pruning alone of the same method."""
    entries = equal_bytes(rows)
    lines = [e["sentence"] for e in entries if e["at"] == INT8]
    tally: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in entries:
        if e["at"] != BOTH:
            continue
        if len(e["values"]) < 2:  # below the smallest pruned float model: not compared
            name = next(iter(e["values"]))
            method = name[len(BOTH) + 2 :].rsplit(", s=", 1)[0]
            tally[(e["model"], method)]["not reached"] += 1
            continue
        method = next(k for k in e["values"] if k.startswith(PRUNING))[len(PRUNING) + 2 : -1]
        top = claims.top_group(e["values"])
        outcome = (
            "within noise"
            if len(top) == 2
            else "both better"
            if top[0].startswith(BOTH)
            else "pruning better"
        )
        tally[(e["model"], method)][outcome] += 1
    lines += smallest_within(rows)
    for (model, method), t in sorted(tally.items()):
        n = sum(t.values()) - t["not reached"]
        beyond = (
            f"; {t['not reached']} smaller than any pruned float32 model measured (not compared)"
            if t["not reached"]
            else ""
        )
        lines.append(
            f"{model}, {method}: at equal bytes, pruning + int8 is more accurate than pruning "
            f"alone at {t['both better']} of {n} byte sizes, less accurate at "
            f"{t['pruning better']}, within noise at {t['within noise']}{beyond}."
        )
    return lines


def smallest_within(rows: list[Row], tolerance: float = TOLERANCE) -> list[str]:
    """Per model, each family's smallest model whose mean accuracy is within
    ``tolerance`` of the dense float32 model's (measured points only)."""
    out = []
    for model, pts in sorted(family_points(rows).items()):
        dense = next((v for (f, _, s), v in pts.items() if f == PRUNING and s == 0), None)
        if dense is None:
            continue
        d_bytes, d_est = dense
        parts = []
        for family in FAMILIES:
            ok_pts = [
                (b, m, s)
                for (f, m, s), (b, e) in pts.items()
                if f == family and e.mean >= d_est.mean - tolerance and (family == INT8 or s > 0)
            ]
            if not ok_pts:
                parts.append(f"{family}: none")
                continue
            b, m, s = min(ok_pts)
            what = "dense" if family == INT8 else f"{m}, s={s:g}"
            parts.append(f"{family} {_kb(b)} = {b / d_bytes:.3f}x ({what})")
        out.append(
            f"{model}, smallest model within {tolerance * 100:g} point of the dense float32 "
            f"accuracy ({d_est.mean:.4f}, mean over seeds): " + "; ".join(parts) + "."
        )
    return out


# -- tables ------------------------------------------------------------------------------


def _speedup(q: dict[str, Any], b: str) -> claims.Speedup | None:
    value = (q.get("speedup_int8_vs_float") or {}).get(b)
    if value is None:
        return None
    return claims.timed_speedup(float(value), q.get("timing") or {}, b)


def _speedup_cell(q: dict[str, Any], b: str) -> str:
    up = _speedup(q, b)
    if up is None:
        return "-"
    return f"{up.value:.2f}x ({up.verdict}{', busy' if up.busy else ''})"


def cells_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Every int8 cell: bytes, accuracy float vs int8, agreement, int8 speed-up."""
    header = [
        "method",
        "sparsity",
        "seed",
        "float ONNX bytes gzip (raw)",
        "int8 ONNX bytes gzip (raw)",
        "x dense fp32 (float / int8)",
        "accuracy float",
        "accuracy int8",
        "int8 = PyTorch",
    ]
    batches = sorted(
        {b for r in int8_rows(rows) for b in _int8(r).get("speedup_int8_vs_float") or {}},
        key=int,
    )
    header += [f"int8 vs float ORT b{b}" for b in batches]
    body = []
    for r in int8_rows(rows):
        q = _int8(r)
        xf, xq = q.get("x_dense_float"), q.get("x_dense_float_int8")
        body.append(
            [
                r["method"],
                f"{r['sparsity']:g}",
                str(r["seed"]),
                f"{q['bytes_float_onnx_gzip']:,} ({q['bytes_float_onnx']:,})",
                f"{q['bytes_int8_onnx_gzip']:,} ({q['bytes_int8_onnx']:,})",
                f"{xf:.3f} / {xq:.3f}" if xf is not None and xq is not None else "-",
                f"{r['accuracy']:.4f}",
                f"{q['accuracy_int8']:.4f}",
                f"{q['agreement_int8_vs_torch']:.4f}",
                *(_speedup_cell(q, b) for b in batches),
            ]
        )
    return header, body


def families_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """The three families' points: model bytes, x dense float32, accuracy ± se."""
    header = [
        "model",
        "family",
        "method",
        "sparsity",
        "model bytes (gzip)",
        "x dense fp32",
        "accuracy (± se)",
    ]
    body = []
    for model, pts in sorted(family_points(rows).items()):
        dense = next((b for (f, _, s), (b, _) in pts.items() if f == PRUNING and s == 0), None)
        seen = set()
        for (f, m, s), (b, e) in sorted(
            pts.items(), key=lambda kv: (FAMILIES.index(kv[0][0]), kv[0][1], kv[0][2])
        ):
            if s == 0 and f != INT8:  # the dense endpoints: once (int8 alone is BOTH's)
                if f == BOTH or (f, s) in seen:
                    continue
                seen.add((f, s))
                m = "dense"
            se = f" ± {e.se:.4f}" if e.se is not None else ""
            body.append(
                [
                    model,
                    f,
                    m,
                    f"{s:g}",
                    f"{b:,.0f}",
                    f"{b / dense:.3f}" if dense else "-",
                    f"{e.mean:.4f}{se}",
                ]
            )
    return header, body


# -- plot --------------------------------------------------------------------------------


def bytes_plot(rows: list[Row]) -> bytes | None:
    """Accuracy vs model bytes (log): pruning alone (solid), pruning + int8 (dashed),
    one colour per method; int8 alone (star) and dense float32 (circle)."""
    from .plots import _colors, _plt, _png

    points = family_points(rows)
    if not points:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(points), figsize=(7 * len(points), 5), squeeze=False)
    for ax, (model, pts) in zip(axes[0], sorted(points.items()), strict=True):
        methods = sorted({m for (f, m, _) in pts if f in (PRUNING, BOTH) and m != "dense"})
        colors = _colors(methods)
        for m in methods:
            for family, style in ((PRUNING, "-"), (BOTH, "--")):
                c = _curve(pts, family, m)
                if len(c) > 1:
                    ax.plot(
                        [b for b, _ in c],
                        [e.mean for _, e in c],
                        style,
                        marker="o",
                        markersize=3,
                        color=colors[m],
                        label=f"{m} ({family})",
                    )
        dense = next((v for (f, _, s), v in pts.items() if f == PRUNING and s == 0), None)
        if dense is not None:
            ax.plot(dense[0], dense[1].mean, "ko", markersize=8, label="dense float32")
        if (INT8, "dense", 0.0) in pts:
            b, e = pts[(INT8, "dense", 0.0)]
            ax.plot(b, e.mean, "k*", markersize=14, label=INT8 + " (dense int8)")
        ax.set_xscale("log")
        ax.set_xlabel("model bytes (ONNX, gzip -9; log)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{model}: accuracy vs model bytes")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def has_int8(rows: list[Row]) -> bool:
    return bool(int8_rows(rows))


def noise_note() -> str:
    return (
        f"Model bytes: the ONNX file gzip-compressed at level 9 (a weight-level model's "
        f"file stores its zeros, which only compression removes; raw bytes in parentheses). "
        f"int8: onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 "
        f"activations calibrated on validation images, classifier float). At equal bytes a "
        f"family's accuracy is interpolated in log(bytes) between its measured points (never "
        f"extrapolated); a family is named more accurate only beyond {claims.Z:g} standard "
        f"errors (test-set sampling error and spread over seeds), else 'within noise'. "
        f"int8 vs float latency: onnxruntime, one thread, timed interleaved; median of the "
        f"per-repeat ratios float / int8, claimed only beyond its IQR and the null control's."
    )

"""Numbers of a comparison, from its stored rows: per-method aggregates, the summary
matrix (accuracy per method x sparsity) and strengths/weaknesses in words.

Every sentence is generated from the measured rows; nothing is written by hand. A
metric missing for a run (a method that does not report it) is skipped, not zero.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from . import claims

Row = dict[str, Any]
#: Accuracy drop (fraction, 0.01 = 1 point) still counted as "keeps dense accuracy".
TOLERANCE = 0.01


def ok(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r["status"] == "ok"]


def gran_of(rows: list[Row]) -> str | None:
    """The granularity a method's runs report (the first one found)."""
    return next((r["granularity"] for r in rows if r.get("granularity")), None)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def methods_in(rows: list[Row]) -> list[str]:
    """Method labels in first-seen order, the dense baseline first."""
    labels = list(dict.fromkeys(r["method"] for r in rows if r["kind"] != "dense"))
    return (["dense"] if any(r["kind"] == "dense" for r in rows) else []) + labels


def sparsities_in(rows: list[Row]) -> list[float]:
    return sorted({r["sparsity"] for r in rows if r["kind"] != "dense"})


def by_cell(rows: list[Row], key: str) -> dict[tuple[str, float], list[float]]:
    """(method, target sparsity) -> values of ``key`` over seeds (ok rows, not None)."""
    out: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in ok(rows):
        if r.get(key) is not None:
            out[(r["method"], r["sparsity"])].append(float(r[key]))
    return out


def latency_b1(row: Row) -> float | None:
    """Median latency (ms) at the smallest batch size measured."""
    lat = row.get("latency_ms") or {}
    if not lat:
        return None
    return float(lat[min(lat, key=lambda k: int(k))])


def dense_value(rows: list[Row], key: str) -> float | None:
    vals = [float(r[key]) for r in ok(rows) if r["kind"] == "dense" and r.get(key) is not None]
    return statistics.fmean(vals) if vals else None


def dense_latency_b1(rows: list[Row]) -> float | None:
    """Mean batch-1 latency (ms) of the dense rows: the fallback reference of
    :func:`prunekit.experiments.claims.speedup` for rows without their own interleaved
    measurement."""
    return dense_value([{**r, "lat": latency_b1(r)} for r in rows], "lat")


def _ft_label(rows: list[Row]) -> str:
    eps = sorted({e for r in rows if (e := claims.finetune_epochs(r)) is not None})
    if eps == [0]:
        return "none (one-shot)"
    return ", ".join(f"{e} ep" for e in eps) or "-"


def ordered_methods(rows: list[Row]) -> list[str]:
    """Method labels for tables: dense, weight-level, neuron-level, then the one-shot rows
    (no fine-tuning) in the same order; first-seen order within each group."""
    labels = [m for m in methods_in(rows) if m != "dense"]

    def key(m: str) -> tuple[int, int]:
        mine = [r for r in rows if r["method"] == m]
        one_shot = all(claims.setting(r) == "one-shot" for r in mine)
        return (int(one_shot), int(claims.level(gran_of(mine)) == "neuron"))

    dense = ["dense"] if "dense" in methods_in(rows) else []
    return dense + sorted(labels, key=key)  # sorted is stable: first-seen order kept


def summary_matrix(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the accuracy table: one row per method, one column per target
    sparsity, cells "mean ± std" over seeds ("failed" when every seed failed). The dense
    row fills only the sparsity-0 column; one-shot rows (no fine-tuning) are listed
    after the fine-tuned ones, with a row for the dense model they were pruned from."""
    sp = sparsities_in(rows)
    acc = by_cell(rows, "accuracy")
    failed = {(r["method"], r["sparsity"]) for r in rows if r["status"] == "failed"}
    header = ["method", "granularity", "fine-tune", "0 (dense)", *[f"{s:g}" for s in sp], "runs"]

    def fmt(vals: list[float] | None) -> str:
        if not vals:
            return "-"
        mu, sd = mean_std(vals)
        return f"{mu:.4f} ± {sd:.4f}" if len(vals) > 1 else f"{mu:.4f}"

    body = []
    one_shot_dense_done = False
    for m in ordered_methods(rows):
        mine = [r for r in rows if r["method"] == m]
        n_ok = sum(1 for r in mine if r["status"] == "ok")
        if m == "dense":
            body.append(
                [
                    "dense",
                    "-",
                    _ft_label(mine),
                    fmt(acc.get(("dense", 0.0))),
                    *[""] * len(sp),
                    f"{n_ok}/{len(mine)}",
                ]
            )
            continue
        if all(claims.setting(r) == "one-shot" for r in mine) and not one_shot_dense_done:
            # The one-shot rows' reference: the dense model before any fine-tuning.
            firsts = {}
            for r in ok(rows):
                if claims.setting(r) == "one-shot" and r.get("accuracy_dense") is not None:
                    firsts.setdefault(r["seed"], float(r["accuracy_dense"]))
            if firsts:
                body.append(
                    [
                        "dense, not fine-tuned",
                        "-",
                        "none (one-shot)",
                        fmt(list(firsts.values())),
                        *[""] * len(sp),
                        "-",
                    ]
                )
            one_shot_dense_done = True
        gran = gran_of(mine) or "-"
        cells = []
        for s in sp:
            vals = acc.get((m, s))
            cells.append(fmt(vals) if vals else ("failed" if (m, s) in failed else "-"))
        body.append([m, gran, _ft_label(mine), "", *cells, f"{n_ok}/{len(mine)}"])
    return header, body


def _fmt_sp(values: list[float]) -> str:
    return ", ".join(f"{s:g}" for s in values)


def _fmt_cost(axis: str, x: float) -> str:
    if axis == "measured speed-up":
        return f"{x:.2f}x"
    unit = "nonzero parameters" if axis == "parameter count" else "MACs"
    return f"{x:,.0f} {unit}"


def _group_of(rows: list[Row], m: str) -> tuple[str, str]:
    mine = [r for r in rows if r["method"] == m]
    one_shot = all(claims.setting(r) == "one-shot" for r in mine)
    return claims.level(gran_of(mine)), "one-shot" if one_shot else "fine-tuned"


def _what(group: tuple[str, str]) -> str:
    lvl, setting = group
    return f"{lvl}-level method" + (" without fine-tuning" if setting == "one-shot" else "")


def rankings(rows: list[Row], key: str = "accuracy") -> dict[str, dict[str, list[float]]]:
    """Per method, the sparsities where it is: 'best' (alone at the top, the gap to every
    other method of its level and setting beyond noise), 'tied' (in the top group, gaps
    within noise), 'worst' (alone at the bottom, beyond noise; levels of 3+ methods)."""
    est = claims.estimates(rows, key)
    labels = [m for m in methods_in(rows) if m != "dense"]
    groups = {m: _group_of(rows, m) for m in labels}
    out: dict[str, dict[str, list[float]]] = {
        m: {"best": [], "tied": [], "worst": []} for m in labels
    }
    for g in set(groups.values()):
        members = [m for m in labels if groups[m] == g]
        for s in sorted({sp for (mm, sp) in est if mm in members}):
            vals = {m: est[(m, s)] for m in members if (m, s) in est}
            if len(vals) < 2 or any(v.se is None for v in vals.values()):
                continue  # one method, or an uncertainty not recorded: no ranking claim
            top = claims.top_group(vals)
            if len(top) == 1:
                out[top[0]]["best"].append(s)
            else:
                for m in top:
                    out[m]["tied"].append(s)
            bottom = claims.top_group(vals, higher=False)
            if len(vals) > 2 and len(bottom) == 1:
                out[bottom[0]]["worst"].append(s)
    return out


def _dense_reference(rows: list[Row], m: str, setting: str) -> float | None:
    """Fine-tuned rows: the dense row (trained for the same total epochs). One-shot rows:
    the dense model they were pruned from, before any fine-tuning (``accuracy_dense``)."""
    if setting == "fine-tuned":
        return dense_value(rows, "accuracy")
    vals = [
        float(r["accuracy_dense"])
        for r in ok(rows)
        if r["method"] == m and r.get("accuracy_dense") is not None
    ]
    return statistics.fmean(vals) if vals else None


def method_notes(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Per method: strengths, weaknesses (lists of sentences) and key figures. Rankings
    and speed-ups are stated only beyond their measured noise (see ``claims``)."""
    acc = by_cell(rows, "accuracy")
    wall = by_cell(rows, "wall_seconds")
    dense_lat = dense_latency_b1(rows)
    per_method_wall = {
        m: statistics.fmean([x for (mm, _), v in wall.items() if mm == m for x in v])
        for m in methods_in(rows)
        if m != "dense" and any(mm == m for mm, _ in wall)
    }
    median_wall = statistics.median(per_method_wall.values()) if per_method_wall else None
    ranks = rankings(rows, "accuracy")
    rob = rankings(rows, "accuracy_corrupted_mean")
    labels = [m for m in methods_in(rows) if m != "dense"]
    groups = {m: _group_of(rows, m) for m in labels}
    neuron_ft = [m for m in labels if groups[m] == ("neuron", "fine-tuned")]
    at_cost: dict[str, list[str]] = {m: [] for m in labels}
    if len(neuron_ft) > 1:
        for axis in claims.COST_AXES:
            for entry in claims.equal_cost(rows, neuron_ft, axis):
                where = f"{_fmt_cost(axis, entry['cost'])} (target {entry['target']:g})"
                # Ties at equal cost are shown in the report's tables (marked *), not here.
                if len(entry["top"]) == 1:
                    at_cost[entry["top"][0]].append(f"equal {axis}, {where}")
    notes: dict[str, dict[str, Any]] = {}
    for m in labels:
        good: list[str] = []
        bad: list[str] = []
        mine = [r for r in rows if r["method"] == m]
        what = _what(groups[m])
        sps = sorted({s for (mm, s) in acc if mm == m})
        rk = ranks[m]
        if rk["best"]:
            good.append(f"most accurate {what} at sparsity {_fmt_sp(rk['best'])} (beyond noise)")
        if rk["tied"]:
            good.append(
                f"tied for most accurate {what} at sparsity {_fmt_sp(rk['tied'])} (within noise)"
            )
        if rk["worst"]:
            bad.append(f"least accurate {what} at sparsity {_fmt_sp(rk['worst'])} (beyond noise)")
        for text in at_cost[m]:
            good.append(f"most accurate {what} at {text} (beyond noise)")
        dense_acc = _dense_reference(rows, m, groups[m][1])
        if dense_acc is not None and sps:
            keeps = [s for s in sps if statistics.fmean(acc[(m, s)]) >= dense_acc - TOLERANCE]
            upto = None
            for s in sps:  # the contiguous range from the lowest sparsity
                if s not in keeps:
                    break
                upto = s
            ref = "dense" if groups[m][1] == "fine-tuned" else "the dense model it was pruned from"
            if upto is not None:
                acc_of = "dense accuracy" if ref == "dense" else f"the accuracy of {ref}"
                good.append(f"within {TOLERANCE * 100:g} point of {acc_of} up to sparsity {upto:g}")
            else:
                drop = dense_acc - statistics.fmean(acc[(m, sps[0])])
                bad.append(f"already {drop * 100:.1f} points below {ref} at sparsity {sps[0]:g}")
            top = sps[-1]
            drop_top = dense_acc - statistics.fmean(acc[(m, top)])
            if drop_top > 0.05:
                bad.append(f"loses {drop_top * 100:.1f} points at sparsity {top:g}")
        if rob[m]["best"]:
            good.append(f"most accurate under input noise at sparsity {_fmt_sp(rob[m]['best'])}")
        if rob[m]["worst"]:
            bad.append(f"least accurate under input noise at sparsity {_fmt_sp(rob[m]['worst'])}")
        ups = [(r["sparsity"], u) for r in ok(mine) if (u := claims.speedup(r, dense_lat))]
        if ups:
            faster = [(s, u) for s, u in ups if u.verdict == "faster"]
            if faster:
                s_fast, best = max(faster, key=lambda t: t[1].value)
                good.append(f"real speed-up at sparsity {s_fast:g}: batch-1 forward {best.text()}")
            else:
                s_fast, best = max(ups, key=lambda t: t[1].value)
                why = ": zeros keep the dense shapes" if groups[m][0] == "weight" else ""
                if best.verdict == "other statistic":  # timed by an older prunekit
                    bad.append(
                        f"speed-up not claimed (best batch-1 at sparsity {s_fast:g}: {best.text()})"
                    )
                else:
                    bad.append(
                        f"no speed-up beyond timing noise (best batch-1 at sparsity "
                        f"{s_fast:g}: {best.text()}){why}"
                    )
        if m in per_method_wall and median_wall:
            ratio = per_method_wall[m] / median_wall
            text = f"{per_method_wall[m]:.1f} s per run ({ratio:.1f}x the median method)"
            if ratio > 1.5:
                bad.append(f"costly: {text}")
            elif ratio < 0.67:
                good.append(f"cheap: {text}")
        fails = sorted({r["sparsity"] for r in mine if r["status"] == "failed"})
        if fails:
            msg = next(r["error"] for r in mine if r["status"] == "failed")
            bad.append(f"failed at sparsity {_fmt_sp(fails)} ({msg})")
        notes[m] = {
            "strengths": good,
            "weaknesses": bad,
            "wall_seconds": per_method_wall.get(m),
            "granularity": gran_of(mine),
            "level": groups[m][0],
            "setting": groups[m][1],
        }
    return notes

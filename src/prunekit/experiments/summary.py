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


def speedup_b1(row: Row, dense_ms: float | None) -> float | None:
    """Batch-1 speed-up over dense (dense ms / this row's ms). Prefers the row's own
    interleaved measurement (``speedup``, timed beside the dense model in one loop) over
    dividing by the dense row's latency, which was timed in another cell at another
    moment of machine load."""
    sp = row.get("speedup") or {}
    if sp:
        return float(sp[min(sp, key=lambda k: int(k))])
    lat = latency_b1(row)
    if lat is None or not dense_ms:
        return None
    return dense_ms / lat


def dense_value(rows: list[Row], key: str) -> float | None:
    vals = [float(r[key]) for r in ok(rows) if r["kind"] == "dense" and r.get(key) is not None]
    return statistics.fmean(vals) if vals else None


def dense_latency_b1(rows: list[Row]) -> float | None:
    """Mean batch-1 latency (ms) of the dense rows: the fallback reference of
    :func:`speedup_b1` for rows without their own interleaved measurement."""
    return dense_value([{**r, "lat": latency_b1(r)} for r in rows], "lat")


def summary_matrix(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the accuracy table: one row per method, one column per target
    sparsity, cells "mean ± std" over seeds ("failed" when every seed failed)."""
    sp = sparsities_in(rows)
    acc = by_cell(rows, "accuracy")
    failed = {(r["method"], r["sparsity"]) for r in rows if r["status"] == "failed"}
    header = ["method", "granularity", *[f"{s:g}" for s in sp], "runs"]
    body = []
    for m in methods_in(rows):
        mine = [r for r in rows if r["method"] == m]
        gran = next((r["granularity"] for r in mine if r.get("granularity")), "-")
        cols = sp if m != "dense" else [0.0]
        cells = []
        for s in cols:
            vals = acc.get((m, s))
            if vals:
                mu, sd = mean_std(vals)
                cells.append(f"{mu:.4f} ± {sd:.4f}" if len(vals) > 1 else f"{mu:.4f}")
            else:
                cells.append("failed" if (m, s) in failed else "-")
        if m == "dense":
            cells = [f"{cells[0]} (sparsity 0)"] + [""] * (len(sp) - 1)
        n_ok = sum(1 for r in mine if r["status"] == "ok")
        body.append([m, "-" if m == "dense" else gran, *cells, f"{n_ok}/{len(mine)}"])
    return header, body


def _rank(
    table: dict[tuple[str, float], list[float]], method: str, s: float, higher: bool = True
) -> tuple[int, int] | None:
    """(rank, number of methods) of ``method`` at sparsity ``s`` by mean value; rank =
    1 + the number of methods strictly better, so ties share the best rank. The worst
    rank is reported as the count when no method is strictly worse."""
    here = {m: statistics.fmean(v) for (m, sp), v in table.items() if sp == s and m != "dense"}
    if method not in here:
        return None
    sign = 1 if higher else -1
    better = sum(sign * v > sign * here[method] for v in here.values())
    worse = sum(sign * v < sign * here[method] for v in here.values())
    return (len(here) if worse == 0 and better > 0 else better + 1), len(here)


def _fmt_sp(values: list[float]) -> str:
    return ", ".join(f"{s:g}" for s in values)


def method_notes(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Per method: strengths, weaknesses (lists of sentences) and key figures."""
    acc = by_cell(rows, "accuracy")
    rob = by_cell(rows, "accuracy_corrupted_mean")
    wall = by_cell(rows, "wall_seconds")
    dense_acc = dense_value(rows, "accuracy")
    dense_lat = dense_latency_b1(rows)
    per_method_wall = {
        m: statistics.fmean([x for (mm, _), v in wall.items() if mm == m for x in v])
        for m in methods_in(rows)
        if m != "dense" and any(mm == m for mm, _ in wall)
    }
    median_wall = statistics.median(per_method_wall.values()) if per_method_wall else None
    notes: dict[str, dict[str, Any]] = {}
    for m in methods_in(rows):
        if m == "dense":
            continue
        good: list[str] = []
        bad: list[str] = []
        mine = [r for r in rows if r["method"] == m]
        sps = sorted({s for (mm, s) in acc if mm == m})
        best = [s for s in sps if (rk := _rank(acc, m, s)) and rk[0] == 1 and rk[1] > 1]
        worst = [s for s in sps if (rk := _rank(acc, m, s)) and rk[0] == rk[1] and rk[1] > 2]
        if best:
            good.append(f"most accurate of all methods at sparsity {_fmt_sp(best)}")
        if worst:
            bad.append(f"least accurate of all methods at sparsity {_fmt_sp(worst)}")
        if dense_acc is not None and sps:
            keeps = [s for s in sps if statistics.fmean(acc[(m, s)]) >= dense_acc - TOLERANCE]
            upto = None
            for s in sps:  # the contiguous range from the lowest sparsity
                if s not in keeps:
                    break
                upto = s
            if upto is not None:
                good.append(
                    f"within {TOLERANCE * 100:g} point of dense accuracy up to sparsity {upto:g}"
                )
            else:
                drop = dense_acc - statistics.fmean(acc[(m, sps[0])])
                bad.append(f"already {drop * 100:.1f} points below dense at sparsity {sps[0]:g}")
            top = sps[-1]
            drop_top = dense_acc - statistics.fmean(acc[(m, top)])
            if drop_top > 0.05:
                bad.append(f"loses {drop_top * 100:.1f} points at sparsity {top:g}")
        rob_best = [s for s in sps if (rk := _rank(rob, m, s)) and rk[0] == 1 and rk[1] > 1]
        rob_worst = [s for s in sps if (rk := _rank(rob, m, s)) and rk[0] == rk[1] and rk[1] > 2]
        if rob_best:
            good.append(f"most accurate under input noise at sparsity {_fmt_sp(rob_best)}")
        if rob_worst:
            bad.append(f"least accurate under input noise at sparsity {_fmt_sp(rob_worst)}")
        ups = [(r["sparsity"], v) for r in ok(mine) if (v := speedup_b1(r, dense_lat)) is not None]
        if ups:
            s_fast, best_up = max(ups, key=lambda t: t[1])
            if best_up > 1.25:
                good.append(
                    f"real speed-up: batch-1 forward {best_up:.2f}x faster than dense "
                    f"at sparsity {s_fast:g}"
                )
            else:
                why = ": zeros keep the dense shapes" if gran_of(mine) == "weight" else ""
                bad.append(f"no real speed-up (best batch-1 speed-up {best_up:.2f}x){why}")
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
        }
    return notes

"""Claims that survive noise: when a comparison may say "faster" or "more accurate".

Accuracy. A method's mean test accuracy ``p`` over ``k`` seeds, measured on ``n`` test
examples, has the standard error

    se = sqrt(p (1 - p) / n + s^2 / k)

where ``p (1 - p) / n`` is the binomial sampling error of one accuracy on ``n``
examples (every seed is scored on the same test set, so this part does not shrink with
``k``) and ``s`` is the sample standard deviation over seeds (absent for one seed). A gap
between two methods is a claim only when ``|p_a - p_b| > Z * sqrt(se_a^2 + se_b^2)``
(``Z = 2``: about 95 % under a normal approximation); otherwise it is "within noise".

Speed-up. The interleaved timing (``prunekit.evaluation.interleaved``) times dense and
pruned once per repeat and stores, per batch size, the speed-up as one statistic of the
per-repeat ratios ``r_i = dense_i / pruned_i`` with its spread:

    speed-up = median_i(r_i),   IQR = (Q1(r_i), Q3(r_i))

(at least ``MIN_REPEATS`` repeats), and the IQR of a null control (dense / a copy of
dense, same loop). The median lies inside the IQR by construction, and the table, the
text, the Pareto plot, the equal-speed-up comparison and result.json all show this one
figure. A speed-up is stated only when the IQR lies above 1 and above the null
control's, and the median is at least ``1 + MIN_EFFECT`` (a slow-down: the IQR below 1
and below the null control's, the median at most ``1 / (1 + MIN_EFFECT)``); otherwise it
is "within noise". Rows timed before the median of the ratios was recorded hold
``median(dense) / median(pruned)`` instead, another statistic than their IQR (it can lie
outside it): they are shown as such and never claimed ("other statistic"). A dense row
is the reference: always "1x", never a speed-up over itself.

Levels. Weight-level methods (zeros inside dense shapes: weight, N:M, kernel) are ranked
against each other at equal sparsity; neuron-level methods (units removed, the model
physically smaller) against each other at equal parameter count, MACs and measured
speed-up, by interpolating each method's accuracy between its measured points (never
extrapolating). Rows without fine-tuning (``finetune_epochs`` 0, one-shot) are ranked
only among themselves.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..evaluation.interleaved import SPEEDUP_STATISTIC

Row = dict[str, Any]

#: Standard errors a gap must exceed to be stated (two: ~95 %, normal approximation).
Z = 2.0
#: Fewest timing repeats whose interquartile range is taken as a measured spread.
MIN_REPEATS = 5
#: Smallest speed-up (or slow-down) stated at all: between models of identical shape
#: this machine showed tight per-repeat ranges 2 % away from 1 (cache state, order), so
#: a smaller effect is not told apart from such systematic error.
MIN_EFFECT = 0.05


def level(granularity: str | None) -> str:
    """The level: "neuron" where the granularity removes whole units (the model shrinks and
    gets faster), else "weight"; a name no granularity is registered under is "weight"."""
    from ..pruning.granularity import GRANULARITIES

    units = granularity in GRANULARITIES and GRANULARITIES.get(granularity).removes_units
    return "neuron" if units else "weight"


def finetune_epochs(row: Row) -> int | None:
    hyper = row.get("hyperparams") or {}
    value = hyper.get("finetune_epochs")
    return None if value is None else int(value)


def setting(row: Row) -> str:
    """'one-shot' for rows without fine-tuning (finetune_epochs 0), else 'fine-tuned'."""
    return "one-shot" if finetune_epochs(row) == 0 else "fine-tuned"


def accuracy_se(values: list[float], n: int | None) -> float | None:
    """Standard error of the mean accuracy (see the module docstring); None when neither
    the test-set size nor a second seed is known."""
    if not values:
        return None
    p, k = statistics.fmean(values), len(values)
    if not n and k < 2:
        return None
    var = p * (1.0 - p) / n if n else 0.0
    if k > 1:
        var += statistics.stdev(values) ** 2 / k
    return math.sqrt(var)


def gap_is_real(a: float, se_a: float | None, b: float, se_b: float | None) -> bool:
    """True when ``|a - b|`` exceeds ``Z`` combined standard errors (unknown: False)."""
    if se_a is None or se_b is None:
        return False
    return abs(a - b) > Z * math.hypot(se_a, se_b)


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float | None


def top_group(values: dict[str, Estimate], higher: bool = True) -> list[str]:
    """The best method and every method whose gap to it is within noise, best first."""
    if not values:
        return []
    sign = 1.0 if higher else -1.0
    order = sorted(values, key=lambda m: -sign * values[m].mean)
    best = values[order[0]]
    return [
        m
        for m in order
        if m == order[0] or not gap_is_real(best.mean, best.se, values[m].mean, values[m].se)
    ]


# -- accuracy per cell -----------------------------------------------------------------


def estimates(rows: list[Row], key: str = "accuracy") -> dict[tuple[str, float], Estimate]:
    """(method, sparsity) -> mean and standard error of ``key`` over the ok rows' seeds."""
    vals: dict[tuple[str, float], list[float]] = defaultdict(list)
    ns: dict[tuple[str, float], list[int]] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok" and r.get(key) is not None:
            vals[(r["method"], r["sparsity"])].append(float(r[key]))
            if r.get("test_examples"):
                ns[(r["method"], r["sparsity"])].append(int(r["test_examples"]))
    return {
        k: Estimate(statistics.fmean(v), accuracy_se(v, min(ns[k]) if ns.get(k) else None))
        for k, v in vals.items()
    }


# -- speed-up ------------------------------------------------------------------------


@dataclass(frozen=True)
class Speedup:
    """A row's batch-``batch`` speed-up over dense and what may be said about it."""

    value: float
    iqr: tuple[float, float] | None
    busy: bool
    reference: bool = False
    #: IQR of dense / (a copy of dense) timed in the same loop: the harness's own error.
    null: tuple[float, float] | None = None
    #: False for rows whose ``value`` is the ratio of medians, not the median of the
    #: per-repeat ratios whose IQR is ``iqr`` (recorded before that statistic was).
    same_statistic: bool = True

    @property
    def verdict(self) -> str:
        if self.reference:
            return "reference"
        if self.iqr is None:
            return "no spread"
        if not self.same_statistic:
            return "other statistic"
        lo, hi = (min(1.0, self.null[0]), max(1.0, self.null[1])) if self.null else (1.0, 1.0)
        if self.iqr[0] > hi and self.value >= 1.0 + MIN_EFFECT:
            return "faster"
        if self.iqr[1] < lo and self.value <= 1.0 / (1.0 + MIN_EFFECT):
            return "slower"
        return "within noise"

    @property
    def significant(self) -> bool:
        return self.verdict in ("faster", "slower")

    @property
    def measured(self) -> bool:
        """True when ``value`` is the median of per-repeat ratios with their spread."""
        return self.verdict not in ("no spread", "other statistic")

    def text(self) -> str:
        flag = "; timed while the machine was busy" if self.busy else ""
        if self.reference:
            return "1x (the reference)"
        if self.iqr is None:
            return f"{self.value:.2f}x (no timing spread recorded: not claimed{flag})"
        spread = f"per-repeat IQR {self.iqr[0]:.2f}-{self.iqr[1]:.2f}x"
        if self.verdict == "other statistic":
            return (
                f"{self.value:.2f}x as a ratio of medians ({spread}: another statistic, "
                f"timed by an older prunekit; not claimed{flag})"
            )
        spread = f"median of per-repeat ratios; {spread}"
        if self.verdict == "faster":
            return f"{self.value:.2f}x faster ({spread}{flag})"
        if self.verdict == "slower":
            return f"{1 / self.value:.2f}x slower ({spread}{flag})"
        return f"within noise ({self.value:.2f}x, {spread}{flag})"


def _smallest(d: dict[str, Any]) -> str:
    return min(d, key=lambda k: int(k))


def speedup(row: Row, dense_ms: float | None = None) -> Speedup | None:
    """The row's batch-1 (smallest batch) speed-up from its interleaved timing (the
    median of the per-repeat ratios, see the module docstring); without one,
    dense_ms / its latency (timed at another moment: no spread, never a claim)."""
    timing = row.get("timing") or {}
    busy = bool(timing.get("busy"))
    if row.get("kind") == "dense":
        return Speedup(1.0, (1.0, 1.0), busy, reference=True)
    sp = row.get("speedup") or {}
    if sp:
        b = _smallest(sp)
        return timed_speedup(float(sp[b]), timing, b)
    lat = row.get("latency_ms") or {}
    if not lat or not dense_ms:
        return None
    return Speedup(dense_ms / float(lat[_smallest(lat)]), None, busy)


def timed_speedup(value: float, timing: dict[str, Any], batch: str) -> Speedup:
    """A speed-up ``value`` at batch size ``batch`` with the spread, null control and
    busy flag its interleaved ``timing`` recorded (``speedup_with_spread``); the IQR
    counts only from ``MIN_REPEATS`` repeats on."""
    spread = (timing.get("spread") or {}).get(batch) or {}
    iqr = spread.get("speedup_iqr") if timing.get("repeats", 0) >= MIN_REPEATS else None
    null = spread.get("null_iqr")
    return Speedup(
        value,
        tuple(iqr) if iqr else None,
        bool(timing.get("busy")),
        null=tuple(null) if null else None,
        same_statistic=timing.get("speedup_statistic") == SPEEDUP_STATISTIC,
    )


def any_busy(rows: list[Row]) -> int:
    """How many ok rows were timed while the machine was busy."""
    return sum(bool((r.get("timing") or {}).get("busy")) for r in rows if r["status"] == "ok")


# -- neuron-level methods at equal cost -------------------------------------------------

#: Cost axes for neuron-level methods: name -> (row key or callable, log-scale?, higher
#: is cheaper?). Parameters and MACs are interpolated on a log scale.
COST_AXES = {
    "parameter count": ("params_nonzero", True, False),
    "MACs": ("macs_effective", True, False),
    "measured speed-up": ("speedup_b1", False, True),
}


def _cost(row: Row, key: str) -> float | None:
    if key == "speedup_b1":
        s = speedup(row)
        return s.value if s and s.measured else None
    v = row.get(key)
    return float(v) if v is not None else None


def _interp(points: list[tuple[float, Estimate]], x: float, log: bool) -> Estimate | None:
    """Accuracy at cost ``x`` between two measured points (None outside their range)."""
    pts = sorted(points, key=lambda p: p[0])
    f = math.log if log else (lambda v: v)
    for (x0, e0), (x1, e1) in zip(pts, pts[1:], strict=False):
        if x0 <= x <= x1:
            t = 0.0 if x1 == x0 else (f(x) - f(x0)) / (f(x1) - f(x0))
            ses = [s for s in (e0.se, e1.se) if s is not None]
            return Estimate(e0.mean + t * (e1.mean - e0.mean), max(ses) if len(ses) == 2 else None)
    if pts and any(p[0] == x for p in pts):
        return next(e for px, e in pts if px == x)
    return None


def equal_cost(rows: list[Row], methods: list[str], axis: str) -> list[dict[str, Any]]:
    """Neuron-level ``methods`` compared at equal cost on ``axis`` (a key of
    ``COST_AXES``). One entry per target sparsity: the reference cost (the median over
    the methods of their mean cost at that target), each method's interpolated
    accuracy there (None outside its measured range) and the top group."""
    key, log, _ = COST_AXES[axis]
    acc = estimates(rows)
    costs: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in rows:
        ok = r["status"] == "ok" and r["method"] in methods
        if ok and (c := _cost(r, key)) is not None and (c > 0 or not log):
            costs[(r["method"], r["sparsity"])].append(c)
    points = {
        m: [(statistics.fmean(costs[(mm, s)]), acc[(mm, s)]) for (mm, s) in costs if mm == m]
        for m in methods
    }
    out = []
    for s in sorted({s for (_, s) in costs}):
        here = [statistics.fmean(v) for (m, ss), v in costs.items() if ss == s]
        if len(here) < 2:
            continue
        x = statistics.median(here)
        values = {m: e for m in methods if (e := _interp(points[m], x, log)) is not None}
        out.append(
            {
                "target": s,
                "cost": x,
                "values": values,
                "top": top_group(values)
                if len(values) > 1 and all(v.se is not None for v in values.values())
                else [],
            }
        )
    return out

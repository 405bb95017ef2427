"""Claims that survive noise: accuracy gaps against their sampling error and seed
spread, speed-ups against the spread of interleaved timings, neuron-level methods at
equal cost, and the busy-machine flag of the timings."""

from __future__ import annotations

import math
import statistics

import pytest
from torch import nn

from prunekit.evaluation import interleaved
from prunekit.evaluation.interleaved import (
    SPEEDUP_STATISTIC,
    busy,
    drift,
    quartiles,
    speedup_with_spread,
)
from prunekit.experiments import claims
from prunekit.experiments.claims import Estimate


def _row(method: str, s: float, acc: float, seed: int = 0, **kw) -> dict:
    return {
        "kind": "method",
        "method": method,
        "sparsity": s,
        "seed": seed,
        "status": "ok",
        "accuracy": acc,
        "test_examples": 10_000,
        **kw,
    }


def test_accuracy_standard_error_by_hand():
    # one seed: binomial only, sqrt(0.9 * 0.1 / 10000) = 0.003
    assert claims.accuracy_se([0.9], 10_000) == pytest.approx(0.003)
    # two seeds 0.88 / 0.92 on 10000 examples: mean 0.9, stdev 0.028284..,
    # se^2 = 0.9 * 0.1 / 10000 + 0.0008 / 2 = 0.000009 + 0.0004
    assert claims.accuracy_se([0.88, 0.92], 10_000) == pytest.approx(math.sqrt(0.000409))
    assert claims.accuracy_se([0.9], None) is None  # nothing known about its noise
    assert claims.accuracy_se([0.88, 0.92], None) == pytest.approx(0.02)


def test_accuracy_gap_within_sampling_error_is_within_noise():
    # one seed each, 10000 test examples: a 0.0005 gap is ~0.12 standard errors
    rows = [_row("a", 0.9, 0.8705), _row("b", 0.9, 0.8700), _row("c", 0.9, 0.70)]
    est = claims.estimates(rows)
    vals = {m: est[(m, 0.9)] for m in "abc"}
    assert claims.top_group(vals) == ["a", "b"]  # tied: no "most accurate"
    assert claims.top_group(vals, higher=False) == ["c"]
    # a real gap: 0.02 at se 0.0034 each -> 4.2 combined standard errors
    rows = [_row("a", 0.9, 0.89), _row("b", 0.9, 0.87)]
    est = claims.estimates(rows)
    assert claims.top_group({m: est[(m, 0.9)] for m in "ab"}) == ["a"]
    # the threshold itself: Z * sqrt(se_a^2 + se_b^2)
    se = 0.003
    limit = claims.Z * math.hypot(se, se)
    assert not claims.gap_is_real(0.9, se, 0.9 - 0.99 * limit, se)
    assert claims.gap_is_real(0.9, se, 0.9 - 1.01 * limit, se)


def test_seed_spread_widens_the_uncertainty():
    # means 0.89 vs 0.87 (as above, beyond the binomial error alone) but the seeds of
    # 'a' spread 0.84-0.94: the gap is within noise
    rows = [_row("a", 0.9, 0.84, 0), _row("a", 0.9, 0.94, 1)]
    rows += [_row("b", 0.9, 0.87, 0), _row("b", 0.9, 0.87, 1)]
    est = claims.estimates(rows)
    assert est[("a", 0.9)].mean == pytest.approx(0.89)
    assert claims.top_group({m: est[(m, 0.9)] for m in "ab"}) == ["a", "b"]


def _timed(value: float, iqr: tuple[float, float], repeats: int = 10, **kw) -> dict:
    return {
        "kind": kw.pop("kind", "method"),
        "speedup": {"1": value, "64": 1.0},
        "timing": {
            "repeats": repeats,
            "spread": {"1": {"speedup_iqr": list(iqr)}},
            "speedup_statistic": SPEEDUP_STATISTIC,
            **kw,
        },
    }


def test_speedup_within_timing_noise_is_within_noise():
    up = claims.speedup(_timed(1.25, (0.95, 1.6)))
    assert up.verdict == "within noise" and not up.significant
    assert up.text() == (
        "within noise (1.25x, median of per-repeat ratios; per-repeat IQR 0.95-1.60x)"
    )
    up = claims.speedup(_timed(1.35, (1.30, 1.41)))
    assert up.verdict == "faster" and up.text() == (
        "1.35x faster (median of per-repeat ratios; per-repeat IQR 1.30-1.41x)"
    )
    up = claims.speedup(_timed(0.5, (0.45, 0.55)))
    assert up.verdict == "slower" and up.text().startswith("2.00x slower")
    # a tight range just above 1 on identical shapes is systematic error, not a speed-up
    assert claims.speedup(_timed(1.02, (1.005, 1.03))).verdict == "within noise"
    # too few repeats for a spread: never a claim
    assert claims.speedup(_timed(1.35, (1.30, 1.41), repeats=2)).verdict == "no spread"
    # no interleaved figure: dense ms / its ms, timed at another moment, is not a claim
    assert claims.speedup({"latency_ms": {"1": 0.5}}, dense_ms=1.0).text() == (
        "2.00x (no timing spread recorded: not claimed)"
    )
    busy_row = _timed(1.35, (1.30, 1.41), busy=True)
    assert claims.speedup(busy_row).text().endswith("; timed while the machine was busy)")


def test_dense_is_never_faster_than_itself():
    up = claims.speedup(_timed(1.13, (1.05, 1.2), kind="dense"))
    assert up.reference and up.verdict == "reference" and up.text() == "1x (the reference)"
    assert up.value == 1.0


def test_neuron_methods_ranked_at_equal_parameter_count():
    # 'a' keeps more parameters at each target than 'b'; at equal target 'a' looks
    # better, at equal parameter count they are compared where both were measured
    rows = []
    for s, pa, aa, pb, ab in [
        (0.5, 1000, 0.90, 800, 0.89),
        (0.8, 400, 0.85, 200, 0.80),
        (0.9, 200, 0.75, 100, 0.70),
    ]:
        rows.append(_row("a", s, aa, params_nonzero=pa))
        rows.append(_row("b", s, ab, params_nonzero=pb))
    out = claims.equal_cost(rows, ["a", "b"], "parameter count")
    by_target = {e["target"]: e for e in out}
    # target 0.8: reference = median(400, 200) = 300 parameters; 'a' between its 0.8 and
    # 0.9 points on a log scale: t = ln(300/400)/ln(200/400) = 0.41504, 'b' between its
    # 0.5 and 0.8 points: t = ln(300/800)/ln(200/800) = 0.70752
    e = by_target[0.8]
    assert e["cost"] == 300
    ta = math.log(300 / 400) / math.log(200 / 400)
    tb = math.log(300 / 800) / math.log(200 / 800)
    assert e["values"]["a"].mean == pytest.approx(0.85 + ta * (0.75 - 0.85))
    assert e["values"]["b"].mean == pytest.approx(0.89 + tb * (0.80 - 0.89))
    # target 0.5: reference 900 is beyond 'b''s largest count (800): never extrapolated
    assert "b" not in by_target[0.5]["values"] and by_target[0.5]["top"] == []


def test_quartiles_drift_and_busy_by_hand():
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0)
    assert drift([1.0, 1.0, 2.0, 2.0]) == pytest.approx(1.0)  # second half twice as slow
    # 2 cores, this process runs 1 thread: other work is load - 1
    assert not busy([1.5, 1.0, 1.0], threads=1, dense_drift=0.0, n_cpus=2)
    assert busy([2.0, 1.0, 1.0], threads=1, dense_drift=0.0, n_cpus=2)
    assert busy([0.1, 0.1, 0.1], threads=1, dense_drift=0.3, n_cpus=2)


def test_interleaved_timing_records_its_spread_and_load():
    small = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    big = nn.Sequential(nn.Flatten(), nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 4))
    out = speedup_with_spread(small, big, (1, 4, 4), [1, 8], repeats=7, warmup=1)
    assert set(out["speedup"]) == {"1", "8"}
    t = out["timing"]
    assert t["repeats"] == 7 and isinstance(t["busy"], bool) and t["cpus"] >= 1
    for b in ("1", "8"):
        lo, hi = t["spread"][b]["speedup_iqr"]
        mn, mx = t["spread"][b]["speedup_min_max"]
        assert mn <= lo <= hi <= mx
        assert lo <= out["speedup"][b] <= hi
        ratios = t["spread"][b]["speedup_ratios"]
        assert len(ratios) == 7 and out["speedup"][b] == pytest.approx(statistics.median(ratios))
    up = claims.speedup({"kind": "method", **out})
    assert up.iqr == tuple(t["spread"]["1"]["speedup_iqr"])


def test_estimate_interpolation_keeps_the_larger_error():
    pts = [(100.0, Estimate(0.8, 0.01)), (200.0, Estimate(0.9, 0.02))]
    e = claims._interp(pts, 150.0, log=False)
    assert e.mean == pytest.approx(0.85) and e.se == 0.02
    assert claims._interp(pts, 250.0, log=False) is None
    assert claims._interp(pts, 200.0, log=False).mean == pytest.approx(0.9)


# Load arrived during repeat 5's dense call and stayed (x3 for both models from repeat 6):
# the dense median comes from loaded repeats, the pruned median straddles quiet and loaded
# ones, and their ratio (2.175x, the old figure) lies outside the per-repeat ratios'
# IQR (1.50-1.58x). Quiet: dense 1.4-1.6 ms, pruned 1.0 ms.
DENSE = [1.40, 1.50, 1.60, 1.50, 4.50, 4.20, 4.50, 4.80, 4.50, 4.50]
PRUNED = [1.00, 1.00, 1.00, 1.00, 1.00, 3.00, 3.00, 3.00, 3.00, 3.00]


def _constructed(monkeypatch, dense: list[float], pruned: list[float]) -> dict:
    def fake(models, *a, **kw):
        return {"pruned": list(pruned), "dense": list(dense), interleaved.NULL: list(dense)}

    monkeypatch.setattr(interleaved, "model_samples", fake)
    return speedup_with_spread(nn.Linear(1, 1), nn.Linear(1, 1), (1,), [1], repeats=len(dense))


def _old_verdict(dense: list[float], pruned: list[float], q1: float) -> str:
    """The claim the old code made: ratio of medians, IQR of the ratios (null IQR 1-1)."""
    old_point = statistics.median(dense) / statistics.median(pruned)
    return "faster" if q1 > 1.0 and old_point >= 1.0 + claims.MIN_EFFECT else "within noise"


def test_speedup_is_the_median_of_the_ratios_inside_its_iqr(monkeypatch):
    old_point = statistics.median(DENSE) / statistics.median(PRUNED)
    ratios = [d / p for d, p in zip(DENSE, PRUNED, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    assert old_point == pytest.approx(2.175) and (q1, q3) == pytest.approx((1.5, 1.575))
    assert not q1 <= old_point <= q3  # the inconsistency the old code reported
    out = _constructed(monkeypatch, DENSE, PRUNED)
    spread = out["timing"]["spread"]["1"]
    assert out["speedup"]["1"] == pytest.approx(1.5) == statistics.median(ratios)
    assert spread["speedup_iqr"] == pytest.approx([q1, q3])
    assert spread["speedup_ratios"] == pytest.approx(ratios)
    assert out["timing"]["speedup_statistic"] == SPEEDUP_STATISTIC
    assert out["timing"]["busy"]  # the dense timing drifted x3 between the halves
    # the claim is made on that same figure, and the text shows it beside its own IQR
    up = claims.speedup({"kind": "method", **out})
    assert up.value == pytest.approx(1.5) and up.verdict == "faster"
    assert up.text() == (
        "1.50x faster (median of per-repeat ratios; per-repeat IQR 1.50-1.57x; "
        "timed while the machine was busy)"
    )


def test_median_of_the_ratios_decides_within_noise(monkeypatch):
    # two equally fast models (ratios 1.01-1.03 when quiet), the same load pattern: the
    # old ratio of medians said 1.51x and claimed "faster"; the median ratio is 1.02x
    dense = [1.01, 1.02, 1.03, 1.02, 3.00, 3.06, 3.03, 3.09, 3.06, 3.03]
    ratios = [d / p for d, p in zip(dense, PRUNED, strict=True)]
    q1 = statistics.quantiles(ratios, n=4, method="inclusive")[0]
    assert _old_verdict(dense, PRUNED, q1) == "faster"
    up = claims.speedup({"kind": "method", **_constructed(monkeypatch, dense, PRUNED)})
    assert up.value == pytest.approx(1.02) and up.verdict == "within noise"
    assert up.text().startswith("within noise (1.02x, median of per-repeat ratios; ")


def test_rows_timed_with_the_old_statistic_are_not_claimed():
    # stored by an older prunekit: ratio of medians 2.06x beside an IQR of 1.63-1.90x
    row = _timed(2.06, (1.63, 1.90))
    del row["timing"]["speedup_statistic"]
    up = claims.speedup(row)
    assert up.verdict == "other statistic" and not up.significant and not up.measured
    assert up.text() == (
        "2.06x as a ratio of medians (per-repeat IQR 1.63-1.90x: another statistic, "
        "timed by an older prunekit; not claimed)"
    )
    # and it is left out of the equal-speed-up comparison
    assert claims._cost({"kind": "method", **row}, "speedup_b1") is None

"""The interleaved dense/pruned timing must not report a speed-up for a model that is
the same computation as its dense model (issue #15 item 7, #16): a simulated clock
reproduces the bias seen in the default comparison (the dense model slow for the first
milliseconds) and checks the warm-up and the null control that remove it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.evaluation.interleaved import speedup_with_spread
from prunekit.evaluation.latency import interleaved_samples
from prunekit.experiments import claims

SIM = {"t": 0.0}  # simulated seconds; global so that a deep copy shares it


class Fake(nn.Module):
    """A forward that costs ``base`` simulated seconds, ``factor`` times that until
    ``slow_until`` (a warming transient that hits this object and its copies)."""

    def __init__(self, base: float, slow_until: float = 0.0, factor: float = 3.0) -> None:
        super().__init__()
        self.base, self.slow_until, self.factor = base, slow_until, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slow = SIM["t"] < self.slow_until
        SIM["t"] += self.base * (self.factor if slow else 1.0)
        return x


def clock() -> float:
    return SIM["t"]


def _speedup(dense: nn.Module, pruned: nn.Module, **kw) -> claims.Speedup:
    SIM["t"] = 0.0
    out = speedup_with_spread(pruned, dense, (4,), [1], repeats=10, clock=clock, **kw)
    return claims.speedup({"kind": "method", **out})


def test_old_settings_reproduce_the_false_speedup():
    """Single-call samples after 5 warm-up calls: a 30 ms transient on the dense model
    makes an identical model look 3x faster, with an IQR far above 1."""
    dense, same = Fake(60e-6, slow_until=0.03), Fake(60e-6)
    old = dict(warmup_s=0.0, min_time_s=0.0, null_control=False, per_call_median=False)
    s = _speedup(dense, same, warmup=5, **old)
    assert s.value == pytest.approx(3.0) and s.iqr[0] == pytest.approx(3.0)
    assert s.verdict == "faster"


def test_time_based_warmup_removes_a_short_transient():
    dense, same = Fake(60e-6, slow_until=0.03), Fake(60e-6)
    s = _speedup(dense, same)  # defaults: 50 ms warm-up, 2 ms samples, null control
    assert s.value == pytest.approx(1.0) and s.iqr == pytest.approx((1.0, 1.0))
    assert s.verdict == "within noise"


def test_null_control_is_recorded_and_bounds_the_claim():
    """Machine noise that hits every candidate alike shows in dense / copy as well:
    a 'speed-up' whose IQR does not clear the null control's IQR is not claimed."""
    SIM["t"] = 0.0
    out = speedup_with_spread(Fake(20e-6), Fake(60e-6), (4,), [1], repeats=10, clock=clock)
    spread = out["timing"]["spread"]["1"]
    assert spread["null_iqr"] == pytest.approx([1.0, 1.0])
    assert spread["null_min_max"] == pytest.approx([1.0, 1.0])
    assert out["timing"]["null_control"] is True
    noisy = claims.Speedup(1.09, (1.06, 1.12), busy=False, null=(0.93, 1.14))
    assert noisy.verdict == "within noise"
    clean = claims.Speedup(1.09, (1.06, 1.12), busy=False, null=(0.99, 1.01))
    assert clean.verdict == "faster"
    slower = claims.Speedup(0.9, (0.88, 0.93), busy=False, null=(0.9, 1.1))
    assert slower.verdict == "within noise"


def test_a_real_speedup_survives_the_null_control():
    dense, small = Fake(60e-6), Fake(20e-6)
    s = _speedup(dense, small)
    assert s.value == pytest.approx(3.0) and s.verdict == "faster"


def test_warmup_seconds_are_not_sampled():
    """No sample is taken before ``warmup_s`` of clock time has passed."""
    SIM["t"] = 0.0
    seen: list[float] = []

    def call() -> None:
        seen.append(SIM["t"])
        SIM["t"] += 0.001

    out = interleaved_samples({"a": call}, repeats=3, warmup=0, warmup_s=0.01, clock=clock)
    assert len(out["a"]) == 3 and len(seen) == 13  # 10 warm-up calls of 1 ms, then 3
    with pytest.raises(Exception, match="warmup_s"):
        interleaved_samples({"a": call}, repeats=1, warmup_s=-1.0, clock=clock)


def test_per_call_median_ignores_a_preempted_call():
    """One call of a 1 ms window descheduled for 5 ms: the window mean doubles, the
    median of the single calls does not move."""
    costs = iter([1e-4] * 4 + [5e-3] + [1e-4] * 100)

    def call() -> None:
        SIM["t"] += next(costs)

    SIM["t"] = 0.0
    med = interleaved_samples(
        {"a": call}, repeats=1, warmup=0, min_time_s=1e-3, clock=clock, per_call_median=True
    )
    assert med["a"] == [pytest.approx(0.1)]
    costs = iter([1e-4] * 4 + [5e-3] + [1e-4] * 100)
    SIM["t"] = 0.0
    mean = interleaved_samples({"a": call}, repeats=1, warmup=0, min_time_s=1e-3, clock=clock)
    assert mean["a"] == [pytest.approx(1000 * (4e-4 + 5e-3) / 5)]  # the window: 5 calls


def test_one_preempted_call_longer_than_the_window_is_outvoted():
    costs = iter([5e-3] + [1e-4] * 100)

    def call() -> None:
        SIM["t"] += next(costs)

    SIM["t"] = 0.0
    out = interleaved_samples(
        {"a": call}, repeats=1, warmup=0, min_time_s=1e-3, clock=clock, per_call_median=True
    )
    assert out["a"] == [pytest.approx(0.1)]  # median of 5 calls, not the 5 ms one

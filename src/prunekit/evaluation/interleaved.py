"""A pruned model timed beside its dense model, with the spread of the timings and the
machine load while they ran, so that a report can tell a speed-up from noise.

Every repeat times the pruned model and the dense model once, back to back, in
alternating order (a fixed order biases the ratio); the per-repeat ratio ``r_i = dense_i / pruned_i`` therefore sees the same machine load in
numerator and denominator. The speed-up and its spread are one statistic of the same
numbers:

    speedup = median_i(r_i),   spread = (Q1(r_i), Q3(r_i)) and (min r_i, max r_i)

(quartiles by the inclusive method, of which the median is the middle one, so the
speed-up always lies inside its interquartile range); a speed-up is a claim only where
that range excludes 1. It is not ``median(dense) / median(pruned)`` (the figure
``compare_latency`` gives, and the ratio of ``latency_ms_dense`` to ``latency_ms``
here): when load hits some repeats, the two medians can come from different repeats
and their ratio can fall outside the per-repeat range (2.06x beside an IQR of
1.63-1.90x in a busy default comparison). The per-repeat ratios are recorded
(``speedup_ratios``) and ``timing["speedup_statistic"]`` names the statistic, so a
report can tell these rows from ones recorded before (``SPEEDUP_STATISTIC``).

Null control (A/A). A deep copy of the dense model is timed in the same loop, and the
per-repeat ratios dense / copy give ``null_iqr``: what the harness reports for two
models that are the same computation. A masked (dense-shaped) model cannot be faster
than its dense model, yet single 60-microsecond forwards of LeNet-300-100 reported
1.06-1.18x with IQRs above 1: the first milliseconds after training ran 2-4x slower
and single-call samples on two threads had 100x outliers (benchmarks/results/
timing_bias.md). Hence a warm-up of ``WARMUP_S`` seconds and the rule that a speed-up
is stated only when its IQR also clears the null control's
(``prunekit.experiments.claims``).

Busy machine: the 1-minute load average is read before and after the loop and the
dense model's median of the first half of the repeats is compared with that of the
second half (``dense_drift``, relative change). The timings are flagged ``busy`` when
the load from *other* work (load average minus this process's torch threads) reaches
half the cores, or when the dense timing drifted by more than ``DRIFT_LIMIT``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .cost import eval_mode
from .latency import _check, forward_calls, interleaved_samples

#: Relative change of the dense median between the two halves of the repeats above
#: which the machine's speed moved during the measurement.
DRIFT_LIMIT = 0.25
#: Untimed warm-up (seconds of interleaved rounds) before the first sample.
WARMUP_S = 0.05
#: Samples of one forward each (0): in two replays at load 9-14 (benchmarks/results/
#: timing_bias_run1.md, _run2.md) windows of 1-2 ms -- their mean, or the median of
#: their single forwards -- scattered identical models more (0.82-1.88x) than single
#: forwards did (0.92-1.15x). Callers may still ask for windows (``min_time_s``).
MIN_TIME_S = 0.0
#: Name of the null-control candidate (a deep copy of the dense model).
NULL = "dense_copy"
#: What ``speedup`` holds (recorded in ``timing["speedup_statistic"]``).
SPEEDUP_STATISTIC = "median of per-repeat ratios"


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """(first, third) quartile, inclusive method; a single value is its own range."""
    if len(values) < 2:
        return float(values[0]), float(values[0])
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def model_samples(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    batch_size: int,
    *,
    repeats: int = 30,
    warmup: int = 5,
    warmup_s: float = WARMUP_S,
    min_time_s: float = MIN_TIME_S,
    clock: Callable[[], float] = time.perf_counter,
    per_call_median: bool = True,
) -> dict[str, list[float]]:
    """Milliseconds per forward of each model, one sample per repeat in repeat order,
    timed interleaved with the order alternating (:func:`~.latency.interleaved_samples`),
    after ``warmup`` rounds and ``warmup_s`` seconds; each sample averages forwards
    over at least ``min_time_s`` seconds."""
    _check([batch_size], repeats, warmup, None, min_time_s)
    calls = forward_calls(models, input_shape, batch_size)
    with eval_mode(*models.values()):
        return interleaved_samples(
            calls,
            repeats=repeats,
            warmup=warmup,
            alternate=True,
            warmup_s=warmup_s,
            min_time_s=min_time_s,
            clock=clock,
            per_call_median=per_call_median,
        )


def ratio_quartiles(ratios: Sequence[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3) of the per-repeat ratios, inclusive method: the speed-up is the
    middle value, so it lies inside its own interquartile range by construction."""
    if len(ratios) < 2:
        return float(ratios[0]), float(ratios[0]), float(ratios[0])
    q1, med, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q1, med, q3


def drift(samples: Sequence[float]) -> float:
    """Relative change of the median from the first half of ``samples`` to the second."""
    half = len(samples) // 2
    if half < 1:
        return 0.0
    a, b = statistics.median(samples[:half]), statistics.median(samples[half:])
    return (b - a) / a if a > 0 else 0.0


def busy(load: list[float] | None, threads: int, dense_drift: float, n_cpus: int) -> bool:
    """True when other work held at least half the cores, or the dense timing drifted."""
    other = max(0.0, load[0] - threads) if load else 0.0
    return other >= n_cpus / 2 or abs(dense_drift) > DRIFT_LIMIT


def speedup_with_spread(
    model: nn.Module,
    reference: nn.Module,
    input_shape: tuple[int, ...],
    batch_sizes: Sequence[int],
    *,
    repeats: int = 30,
    warmup: int = 5,
    warmup_s: float = WARMUP_S,
    min_time_s: float = MIN_TIME_S,
    null_control: bool = True,
    clock: Callable[[], float] = time.perf_counter,
    per_call_median: bool = True,
) -> dict[str, Any]:
    """``latency_ms``, ``latency_ms_dense`` (per batch size, medians), ``speedup`` (per
    batch size, the median of the per-repeat ratios dense / pruned; see the module
    docstring) and ``timing``: per batch size the per-repeat ratios, their IQR and
    min/max, the IQR of both latencies, the null control's ratios (``null_iqr``, ``null_min_max``: dense / a deep
    copy of it, timed in the same loop), the load average before and after, the dense
    drift and the busy flag."""
    before = loadavg()
    pruned, dense, speedup, spread = {}, {}, {}, {}
    drifts = []
    models = {"pruned": model, "dense": reference}
    if null_control:
        from ..pruning.masks import clone  # deepcopy that also copies prune hooks

        models[NULL] = clone(reference)
    for b in batch_sizes:
        s = model_samples(
            models,
            input_shape,
            b,
            repeats=repeats,
            warmup=warmup,
            warmup_s=warmup_s,
            min_time_s=min_time_s,
            clock=clock,
            per_call_median=per_call_median,
        )
        key = str(b)
        pruned[key] = statistics.median(s["pruned"])
        dense[key] = statistics.median(s["dense"])
        ratios = [d / p for d, p in zip(s["dense"], s["pruned"], strict=True)]
        q1, speedup[key], q3 = ratio_quartiles(ratios)
        drifts.append(drift(s["dense"]))
        spread[key] = {
            "speedup_ratios": ratios,
            "speedup_iqr": [q1, q3],
            "speedup_min_max": [min(ratios), max(ratios)],
            "latency_ms_iqr": list(quartiles(s["pruned"])),
            "latency_ms_dense_iqr": list(quartiles(s["dense"])),
            "dense_drift": drifts[-1],
        }
        if null_control:
            null = [d / c for d, c in zip(s["dense"], s[NULL], strict=True)]
            spread[key]["null_iqr"] = list(quartiles(null))
            spread[key]["null_min_max"] = [min(null), max(null)]
    after = loadavg()
    worst = max((x for x in (before, after) if x), key=lambda x: x[0], default=None)
    n_cpus, threads = cpus(), torch.get_num_threads()
    dense_drift = max(drifts, key=abs) if drifts else 0.0
    return {
        "latency_ms": pruned,
        "latency_ms_dense": dense,
        "speedup": speedup,
        "timing": {
            "repeats": repeats,
            "warmup_s": warmup_s,
            "min_time_s": min_time_s,
            "null_control": null_control,
            "speedup_statistic": SPEEDUP_STATISTIC,
            "spread": spread,
            "loadavg_before": before,
            "loadavg_after": after,
            "cpus": n_cpus,
            "threads": threads,
            "dense_drift": dense_drift,
            "busy": busy(worst, threads, dense_drift, n_cpus),
        },
    }

"""Wall-clock latency of a forward pass (median milliseconds).

Timing runs under ``torch.no_grad()`` (not ``inference_mode``: the sparse/CSR path
fails under it) with the model in eval mode; training flags and the thread count are
restored afterwards. The input is a fixed random tensor on the model's device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..registry import PrunekitError
from .cost import _check_shape, _example, eval_mode


def _check(batch_sizes: Sequence[int], repeats: int, warmup: int, threads, min_time_s) -> None:
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise PrunekitError(f"batch sizes must be integers >= 1, got {batch_sizes!r}")
    if repeats < 1 or warmup < 0:
        raise PrunekitError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if threads is not None and threads < 1:
        raise PrunekitError(f"threads must be >= 1, got {threads}")
    if min_time_s < 0:
        raise PrunekitError(f"min_time_s must be >= 0, got {min_time_s}")


#: Fewest calls whose median makes a ``per_call_median`` sample.
MEDIAN_CALLS = 5


@contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interleaved_samples(
    candidates: dict[str, Callable[[], object]],
    *,
    repeats: int = 30,
    warmup: int = 5,
    min_time_s: float = 0.0,
    threads: int | None = None,
    alternate: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    warmup_s: float = 0.0,
    per_call_median: bool = False,
) -> dict[str, list[float]]:
    """Milliseconds per call of each candidate, ``repeats`` samples each, timed
    INTERLEAVED: every round calls each candidate once in turn, so drift in machine load
    hits all candidates alike; ``alternate`` reverses the order on odd rounds (a fixed
    order biases a ratio of two candidates through cache state). A sample loops the call
    until ``min_time_s`` seconds of ``clock`` have elapsed and divides (for calls below
    the timer's resolution). ``warmup`` untimed rounds first, and more untimed rounds
    until ``warmup_s`` seconds of ``clock`` have passed: after training or a burst of
    other work, single forwards of a small model ran 2-4x slower for the first
    milliseconds (benchmarks/results/timing_bias.md), longer than a few warm-up calls,
    and that transient hit whichever candidate the first timed rounds started with.
    ``per_call_median``: a sample is the median of the single calls' times within its
    ``min_time_s`` window (and at least ``MEDIAN_CALLS`` calls, so that one preempted call
    that outlasts the window is outvoted) instead of window / calls -- on a machine with more runnable
    threads than cores a wall-clock window of milliseconds is often cut by preemption
    (ratios of 0.05-20x between identical models at load 13 on 2 cores), a single
    call rarely is. ``threads`` is set for the duration (restored after); calls run under
    ``torch.no_grad()``. The one timing loop of prunekit: model latency, the
    dense/pruned speed-up with its spread, the CSR decision and the latency tables all
    go through it."""
    _check([1], repeats, warmup, threads, min_time_s)
    if warmup_s < 0:
        raise PrunekitError(f"warmup_s must be >= 0, got {warmup_s}")
    if not candidates:
        raise PrunekitError("interleaved timing needs at least one candidate")
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    with _num_threads(threads), torch.no_grad():
        began, i, timed = clock(), 0, 0
        while timed < repeats:
            warming = i < warmup or clock() - began < warmup_s
            for name in names[::-1] if alternate and i % 2 else names:
                call = candidates[name]
                n, start, times = 0, clock(), []
                while True:
                    t0 = clock() if per_call_median else 0.0
                    call()
                    n += 1
                    now = clock()
                    if per_call_median:
                        times.append(now - t0)
                    elapsed = now - start
                    if elapsed >= min_time_s and n >= (MEDIAN_CALLS if per_call_median else 1):
                        break
                if not warming:
                    per_call = statistics.median(times) if per_call_median else elapsed / n
                    samples[name].append(1000.0 * per_call)
            i += 1
            timed += not warming
    return samples


def forward_calls(
    models: dict[str, nn.Module], input_shape: tuple[int, ...], batch_size: int
) -> dict[str, Callable[[], object]]:
    """One call per model: its forward on a fixed random ``(batch_size, *input_shape)``
    batch on the model's device (CUDA synchronized, so a call is a finished forward)."""
    shape = _check_shape(input_shape)

    def call(model: nn.Module) -> Callable[[], object]:
        x = _example(model, shape, batch_size)
        if not x.is_cuda:
            return lambda: model(x)

        def synced() -> None:
            model(x)
            torch.cuda.synchronize()

        return synced

    return {name: call(m) for name, m in models.items()}


def compare_latency(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    batch_size: int,
    *,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
    min_time_s: float = 0.0,
) -> dict[str, float]:
    """Median milliseconds per forward of a ``(batch_size, *input_shape)`` batch for each
    candidate, timed INTERLEAVED (:func:`interleaved_samples`). ``min_time_s``: each
    sample loops the forward until that long has elapsed and divides (for
    sub-timer-resolution models).
    """
    _check([batch_size], repeats, warmup, threads, min_time_s)
    if not models:
        raise PrunekitError("compare_latency needs at least one model")
    calls = forward_calls(models, input_shape, batch_size)
    with eval_mode(*models.values()):
        samples = interleaved_samples(
            calls, repeats=repeats, warmup=warmup, min_time_s=min_time_s, threads=threads
        )
    return {name: statistics.median(s) for name, s in samples.items()}


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_sizes: Sequence[int] = (1, 64),
    *,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
    min_time_s: float = 0.0,
) -> dict[str, float]:
    """Median milliseconds per forward of a ``(b, *input_shape)`` batch, keyed by
    ``str(b)`` for each ``b`` in ``batch_sizes``; ``warmup`` untimed forwards first.
    ``threads`` sets ``torch.set_num_threads`` for the duration (restored after)."""
    _check(batch_sizes, repeats, warmup, threads, min_time_s)
    return {
        str(b): compare_latency(
            {"m": model},
            input_shape,
            b,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            min_time_s=min_time_s,
        )["m"]
        for b in batch_sizes
    }

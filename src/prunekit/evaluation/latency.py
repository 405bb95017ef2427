"""Wall-clock latency of a forward pass (median milliseconds).

Timing runs under ``torch.no_grad()`` (not ``inference_mode``: the sparse/CSR path
fails under it) with the model in eval mode; training flags and the thread count are
restored afterwards. The input is a fixed random tensor on the model's device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

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


@contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time_once(model: nn.Module, x: Tensor, min_time_s: float) -> float:
    """Seconds per forward: run at least once and until ``min_time_s`` has elapsed."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    n, start = 0, time.perf_counter()
    while True:
        model(x)
        n += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time_s:
            return elapsed / n


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
    candidate, timed INTERLEAVED: every repeat times each model once in turn, so drift
    in machine load hits all candidates alike. ``min_time_s``: each sample loops the
    forward until that long has elapsed and divides (for sub-timer-resolution models).
    """
    _check([batch_size], repeats, warmup, threads, min_time_s)
    if not models:
        raise PrunekitError("compare_latency needs at least one model")
    shape = _check_shape(input_shape)
    inputs = {name: _example(m, shape, batch_size) for name, m in models.items()}
    samples: dict[str, list[float]] = {name: [] for name in models}
    with _num_threads(threads), eval_mode(*models.values()), torch.no_grad():
        for i in range(warmup + repeats):
            for name, m in models.items():
                t = _time_once(m, inputs[name], min_time_s)
                if i >= warmup:
                    samples[name].append(t)
    return {name: 1000.0 * statistics.median(s) for name, s in samples.items()}


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

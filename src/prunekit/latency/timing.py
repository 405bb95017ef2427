"""How the latency tables time things: one thread, a CPU-time clock, every timing in
units of a fixed reference layer timed in the same interleaved loop.

Clock: ``clock="thread"`` (default) times with the CPU time of the calling thread
(``time.thread_time``). With one thread (eager torch with ``set_num_threads(1)``,
onnxruntime with one intra-op thread) all the work runs on that thread, so on an idle
machine thread time equals wall-clock latency; on a shared one it leaves out the time
other processes hold the core (wall-clock medians moved 1.5x between two runs of the
same model here, at load 15-20 on 2 cores). ``clock="wall"`` is plain wall-clock.

Load normalization: this machine is shared, and its load moves every timing by up to
2-3x within minutes. Every timing (table entries, whole models) is therefore taken
interleaved with a fixed *reference* layer (a 16->16 3x3 conv on 16x16 inputs, same
runtime and batch size) and stored in units of it (``ms / ref_ms``): time slicing slows
both alike, so ratios measured minutes apart stay comparable. Milliseconds are those
units times the reference's latency measured next to the model being predicted.

What the units do not cancel (benchmarks/results/latency_predictor.md): at batch 1 under load the reference's per-call median moved by about 2 % over
rounds while the dense LeNet-5 (1.6 MB of fc1 weights) moved by 20 % or more in the
same rounds; ResNet-20's batch-64 entries re-measured hours after they were cached
moved by a median of -10.6 % in units, 367 of 676 by more than 10 %. Our reading (not
verified with hardware counters): the reference layer has 9 KB of weights and small
activations and barely feels other jobs' contention for the shared L3 cache and memory;
layers and models with megabytes of weights or activations do. Hence several
passes per entry (:mod:`.cache`) and medians over rounds, and the spread reported next
to every predicted-vs-measured figure.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from ..evaluation.allocator import steady_allocator
from ..evaluation.cost import eval_mode
from ..evaluation.latency import compare_latency, forward_calls, interleaved_samples
from ..registry import PrunekitError

TABLE_RUNTIMES = ("eager", "compile", "onnxruntime")
CLOCKS = ("thread", "wall")


def compare(
    models: dict[str, nn.Module],
    input_shape: Sequence[int],
    batch_size: int,
    *,
    clock: str = "thread",
    repeats: int = 15,
    warmup: int = 3,
    threads: int = 1,
    min_time_s: float = 0.005,
    per_call_median: bool = False,
) -> dict[str, float]:
    """Median ms per forward of each model, interleaved (every repeat times each model
    once in turn), with ``clock`` (module docstring). ``per_call_median`` (thread clock
    only): a sample is the median single call of its window instead of the window's
    mean (:func:`prunekit.evaluation.latency.interleaved_samples`). The allocator is
    made steady first (:func:`steady_allocator`)."""
    steady_allocator()
    if clock == "wall":
        return compare_latency(
            models,
            tuple(input_shape),
            batch_size,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            min_time_s=min_time_s,
        )
    if clock != "thread":
        raise PrunekitError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    with eval_mode(*models.values()):
        samples = interleaved_samples(
            forward_calls(models, tuple(input_shape), batch_size),
            repeats=repeats,
            warmup=warmup,
            min_time_s=min_time_s,
            threads=threads,
            clock=time.thread_time,
            per_call_median=per_call_median,
        )
    return {k: statistics.median(v) for k, v in samples.items()}


def check_runtime(runtime: str) -> None:
    """One-line errors for a runtime the tables cannot time here."""
    from ..inference.deploy import _available

    if runtime not in TABLE_RUNTIMES:
        raise PrunekitError(
            f"unknown runtime {runtime!r} for a latency target; known: {', '.join(TABLE_RUNTIMES)}"
        )
    if not _available(runtime):
        need = {
            "onnxruntime": "onnxruntime is not installed: pip install 'prunekit[onnx]'",
            "compile": "torch.compile needs a C++ compiler (g++) on PATH",
        }[runtime]
        raise PrunekitError(f"runtime {runtime!r} is not available: {need}")


def build_runtime(module: nn.Module, runtime: str, example: torch.Tensor, threads: int) -> Any:
    """``module`` (eval) as a callable in ``runtime`` (prunekit.deploy's builders)."""
    from ..inference.deploy import Deployed, _build

    gm = fx.symbolic_trace(module.eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = _build(gm, runtime, example, threads)
    return Deployed(gm, fn, runtime, {})


def _time_each(
    built: dict[str, nn.Module],
    shapes: dict[str, tuple],
    batch: int,
    threads: int,
    repeats: int,
    clock: str = "thread",
) -> list[tuple[str, float]]:
    """Median ms of each callable, interleaved; inputs differ in shape per entry, so
    each is timed through a wrapper that owns its input."""
    wrappers = {sig: _Fixed(fn, shapes[sig], batch) for sig, fn in built.items()}
    ms = compare(
        wrappers, (1,), 1, clock=clock, repeats=repeats, warmup=2, threads=threads, min_time_s=0.002
    )
    ref = ms.pop(REF)
    return [(sig, v / ref) for sig, v in ms.items()]


REF = "__reference__"


def reference(runtime: str, batch: int, threads: int) -> nn.Module:
    """The fixed reference layer every timing is divided by (module docstring)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1).eval()
    return _Fixed(
        build_runtime(conv, runtime, torch.rand(batch, 16, 16, 16), threads), (16, 16, 16), batch
    )


class _Fixed(nn.Module):
    """Calls ``fn`` on its own fixed input, whatever it is given (for compare_latency)."""

    def __init__(self, fn: nn.Module, shape: tuple, batch: int) -> None:
        super().__init__()
        self.fn = fn
        self.register_buffer("x", torch.rand((batch, *shape)))

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.fn(self.x)


def measure_deployed(
    models: dict[str, nn.Module],
    input_shape: Sequence[int],
    runtime: str,
    batch_size: int,
    threads: int = 1,
    *,
    repeats: int = 15,
    extra: dict[str, nn.Module] | None = None,
    clock: str = "thread",
    per_call_median: bool = False,
) -> dict[str, float]:
    """Median ms per batch of each model deployed in ``runtime`` (BN folded, exact
    rewrites; :func:`prunekit.deploy.deploy`), timed interleaved with ``threads``;
    ``extra``: modules timed alongside as they are (the reference layer)."""
    from ..inference.deploy import deploy

    shape = tuple(input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deployed = {
            k: deploy(m, shape, runtime=runtime, batch_size=batch_size, threads=threads)
            for k, m in models.items()
        }
    deployed.update(extra or {})
    return compare(
        deployed,
        shape,
        batch_size,
        clock=clock,
        repeats=repeats,
        warmup=3,
        threads=threads,
        min_time_s=0.005,
        per_call_median=per_call_median,
    )

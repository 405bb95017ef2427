"""Latency tables: measured milliseconds per layer shape, and a predictor that sums them.

A model's deployed latency (``prunekit.deploy``: BatchNorm folded, exact rewrites, then
the runtime) is predicted as

    T(w) = a * sum_l t_l(c_in_l(w), c_out_l(w)) + r0 + sum_k r_k * A_k(w) / A(w_dense)

- ``w``: the width of every prunable dependency group (:func:`prunekit.surgery.analyze`);
  a Conv/Linear layer ``l`` takes its input width from the group it consumes (times
  ``fan`` after a flatten) and its output width from the group it produces (fixed
  widths -- model input, classes -- stay);
- ``t_l(i, o)``: the measured latency of that layer alone (a Conv2d/Linear with bias,
  since BN is folded at deploy) at its input resolution and batch size, in the runtime,
  for every pair of *grid* widths (below): the **table**;
- ``r0 + sum_k r_k A_k(w)/A(w_dense)``: everything that is not a Conv/Linear (ReLU,
  pooling, residual adds) and the model-level intercept ``r0`` (one call of the whole
  deployed model: Python dispatch, the graph module, input/output handling -- what the
  per-layer sum double-counts or misses). ``A_k(w)`` is the number of output elements
  of the layers whose output has spatial size ``k`` (the activation volume the
  elementwise ops and pooling at that resolution touch), ``A(w_dense)`` their total in
  the dense model. One term per resolution, not one for all: at batch 1 LeNet-5's
  pooling and ReLU on conv1's 24x24 maps cost per element several times what the
  ops on 1x1 features do, and a single volume term put the error of the
  predicted-vs-measured latency at up to 35 % (benchmarks/results/latency_target.md);
- ``a, r0, r_k``: least squares in *relative* error (each configuration's row divided
  by its measured latency, since the target is a ratio) over whole-model measurements
  of dense, half, narrowest and seeded random grid points, with every coefficient
  non-negative (a time): a feature whose coefficient comes out negative is dropped and
  the fit redone. ``a`` is what isolated layer timings miss inside a whole model
  (caches are cold between layers; measured up to several x at batch 64 here). The
  fit's error on those configurations, and on fresh random ones, is reported
  (``benchmarks/latency_target.py``).

This is the per-layer lookup table of NetAdapt (Yang et al. 2018) and HALP (Shen et al.
2022), measured here instead of assumed proportional to MACs (on this machine the CPU
kernels lose MAC rate as layers narrow: benchmarks/results/structured_speedup.md).

Grid widths of a group of ``n`` units: every width when ``n <= 8``, else the multiples of
``s = 4 * ceil(n / 64)`` (at most ~16 points, SIMD-friendly) and ``n`` itself. Only grid
widths are ever chosen, so every prediction is a sum of measured entries.

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

Entries are cached on disk (one JSON file per machine, torch version, runtime, batch
size and thread count; written atomically) so a table is measured once per machine.
Because a cached entry is reused by every later prediction, one entry timed during a
burst of other work biases all of them, repeatably; each entry is therefore measured
in at least two passes over the table and kept as the median of agreeing samples
(:func:`settled`), and each calibration configuration is the median of three rounds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from ..evaluation.cost import eval_mode
from ..evaluation.latency import compare_latency, forward_calls, interleaved_samples
from ..pruning.dependency import UnitGroup, analyze
from ..registry import PrunekitError
from ..storage.atomic import atomic_write_json

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
    mean (:func:`prunekit.evaluation.latency.interleaved_samples`)."""
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
    import time

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


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table_key(runtime: str, batch_size: int, threads: int, clock: str = "thread") -> dict[str, Any]:
    """What a measured entry depends on: machine, torch, runtime, batch size, threads
    (and the clock it was timed with)."""
    return {
        "clock": clock,
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "system": platform.system(),
        "torch": torch.__version__,
        "runtime": runtime,
        "batch_size": batch_size,
        "threads": threads,
    }


def default_cache_dir() -> Path:
    env = os.environ.get("PRUNEKIT_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "prunekit"
    return base / "latency"


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


class TableCache:
    """``{signature: value}`` for one :func:`table_key`, in one JSON file, with every
    measurement of each entry (``samples``; the value is their median, see
    :func:`settled`). A file written before samples were kept loads each entry as one
    sample, so it is re-checked by the next :meth:`LatencyModel.measure_table`."""

    def __init__(self, key: dict[str, Any], cache_dir: str | Path | None = None) -> None:
        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir or default_cache_dir()) / f"{key['runtime']}-{digest}.json"
        self.entries: dict[str, float] = {}
        self.samples: dict[str, list[float]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("key") == key:
                    self.entries = {str(k): float(v) for k, v in data["entries"].items()}
                    kept = data.get("samples", {})
                    self.samples = {
                        k: [float(x) for x in kept.get(k, [v])] for k, v in self.entries.items()
                    }
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self.entries, self.samples = {}, {}  # corrupted: re-measured, not trusted

    def add(self, sig: str, value: float) -> None:
        """One more measurement of ``sig``; its entry becomes the median of all."""
        self.samples.setdefault(sig, []).append(float(value))
        self.entries[sig] = statistics.median(self.samples[sig])

    def save(self) -> None:
        atomic_write_json(
            self.path, {"key": self.key, "entries": self.entries, "samples": self.samples}
        )


#: Each table entry is measured in at least ``MIN_PASSES`` passes over the whole table
#: (so its samples are seconds to minutes apart, not one burst of load) and in at most
#: ``MAX_PASSES``; it is settled once ``MIN_PASSES`` of its samples agree within
#: ``AGREE`` (relative range around their median).
MIN_PASSES = 2
MAX_PASSES = 4
AGREE = 0.10


def settled(samples: Sequence[float], min_passes: int = MIN_PASSES, agree: float = AGREE) -> bool:
    """Whether an entry's measurements are enough: ``min_passes`` of them -- the median
    and its nearest neighbours -- span at most ``agree`` of the median. At batch 1 an
    entry is mostly fixed per-call cost (benchmarks/results/latency_predictor.md), so a
    single measurement taken during a burst of other work was up to 1.6x its re-measured
    value, larger than the whole width effect, and once cached it biased every
    configuration using it (LeNet-5 conv2 at 8 channels: +15-30 %)."""
    if len(samples) < min_passes:
        return False
    med = statistics.median(samples)
    if med <= 0:
        return True
    near = sorted(samples, key=lambda x: abs(x - med))[:min_passes]
    return (max(near) - min(near)) / med <= agree


@dataclass(frozen=True)
class Layer:
    """A Conv2d/Linear of the model and where its widths come from."""

    name: str
    kind: str  # "conv" | "linear"
    in_group: int | None  # index into LatencyModel.groups, None = fixed
    in_fixed: int
    fan: int  # inputs per unit of in_group (Linear after a flatten: H*W)
    out_group: int | None
    out_fixed: int
    spatial: tuple[int, ...]  # input H, W of a conv
    conv: tuple = ()  # kernel, stride, padding, dilation
    out_spatial: int = 1  # output elements per channel (H_out * W_out)

    def shape(self, widths: Sequence[int]) -> tuple[int, int]:
        c_in = self.in_fixed if self.in_group is None else widths[self.in_group] * self.fan
        c_out = self.out_fixed if self.out_group is None else widths[self.out_group]
        return c_in, c_out

    def signature(self, c_in: int, c_out: int) -> str:
        if self.kind == "linear":
            return f"linear|{c_in}x{c_out}"
        k, s, p, d = self.conv
        hw = "x".join(map(str, self.spatial))
        return f"conv|k{k}s{s}p{p}d{d}|{hw}|{c_in}x{c_out}"

    def module(self, c_in: int, c_out: int) -> nn.Module:
        if self.kind == "linear":
            return nn.Linear(c_in, c_out)
        k, s, p, d = self.conv
        return nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d)

    def input_shape(self, c_in: int) -> tuple[int, ...]:
        return (c_in,) if self.kind == "linear" else (c_in, *self.spatial)


def grid(n: int) -> list[int]:
    """Grid widths of a group of ``n`` units (module docstring)."""
    if n <= 8:
        return list(range(1, n + 1))
    step = 4 * math.ceil(n / 64)
    return sorted({*range(step, n, step), n})


def _layers(model: nn.Module, groups: list[UnitGroup], input_shape) -> list[Layer]:
    out_of = {p: i for i, g in enumerate(groups) for p in g.producers}
    in_of = {c: (i, fan) for i, g in enumerate(groups) for c, fan in g.consumers}
    shapes: dict[str, tuple] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            hooks.append(
                m.register_forward_hook(
                    lambda mod, i, o, name=name: shapes.__setitem__(
                        name, (tuple(i[0].shape[2:]), tuple(o.shape[2:]))
                    )
                )
            )
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    layers = []
    for name, m in model.named_modules():
        if name not in shapes:  # not a Conv2d/Linear, or not called
            continue
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            continue  # depthwise: a follower; its cost goes into the rest term
        gi, fan = in_of.get(name, (None, 1))
        go = out_of.get(name)
        in_n = m.in_features if isinstance(m, nn.Linear) else m.in_channels
        out_n = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        spatial, out_sp = shapes[name]
        conv = ()
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str):
                raise PrunekitError(f"latency tables need numeric padding ({name!r})")
            conv = (m.kernel_size, m.stride, m.padding, m.dilation)
        layers.append(
            Layer(
                name=name,
                kind="linear" if isinstance(m, nn.Linear) else "conv",
                in_group=gi,
                in_fixed=in_n,
                fan=fan,
                out_group=go,
                out_fixed=out_n,
                spatial=spatial,
                conv=conv,
                out_spatial=math.prod(out_sp) if out_sp else 1,
            )
        )
    return layers


def build_runtime(module: nn.Module, runtime: str, example: torch.Tensor, threads: int) -> Any:
    """``module`` (eval) as a callable in ``runtime`` (prunekit.deploy's builders)."""
    from ..inference.deploy import Deployed, _build

    gm = fx.symbolic_trace(module.eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = _build(gm, runtime, example, threads)
    return Deployed(gm, fn, runtime, {})


class LatencyModel:
    """Tables + predictor for one model architecture in one runtime / batch / threads.

    ``model`` defines the architecture (its weights are irrelevant). ``widths`` are lists
    indexed like :attr:`groups` (the prunable groups, in graph order).
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: Sequence[int],
        *,
        runtime: str = "eager",
        batch_size: int = 64,
        threads: int = 1,
        cache_dir: str | Path | None = None,
        repeats: int = 7,
        clock: str = "thread",
        min_passes: int = MIN_PASSES,
        max_passes: int = MAX_PASSES,
        agree: float = AGREE,
    ) -> None:
        check_runtime(runtime)
        if not 1 <= min_passes <= max_passes:
            raise PrunekitError(
                f"need 1 <= min_passes <= max_passes, got {min_passes} and {max_passes}"
            )
        self.min_passes, self.max_passes, self.agree = min_passes, max_passes, agree
        if clock not in CLOCKS:
            raise PrunekitError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        self.clock = clock
        self.model = model
        self.input_shape = tuple(input_shape)
        self.runtime, self.batch_size, self.threads = runtime, batch_size, threads
        self.repeats = repeats
        self.groups = [g for g in analyze(model) if g.fixed is None]
        self.layers = _layers(model, self.groups, self.input_shape)
        self.full = [g.size for g in self.groups]
        self.grids = [grid(n) for n in self.full]
        self.cache = TableCache(table_key(runtime, batch_size, threads, clock), cache_dir)
        self.rest: tuple[float, ...] | None = None
        #: the output spatial sizes that get their own volume term (module docstring)
        self.resolutions = sorted({layer.out_spatial for layer in self.layers}, reverse=True)
        self.ref = reference(runtime, batch_size, threads)

    # -- the table ----------------------------------------------------------------------
    def _options(self, layer: Layer) -> list[tuple[int, int]]:
        ins = (
            [layer.in_fixed]
            if layer.in_group is None
            else [w * layer.fan for w in self.grids[layer.in_group]]
        )
        outs = [layer.out_fixed] if layer.out_group is None else self.grids[layer.out_group]
        return [(i, o) for i in ins for o in outs]

    def measure_table(self) -> int:
        """Measure every grid entry of every layer until it is :func:`settled`; returns
        how many entries were new. A pass times the unsettled entries of every layer
        (those of one layer interleaved, one ``compare`` call), then the next pass
        starts over, so repeated measurements of an entry are a whole pass apart. An
        entry with ``max_passes`` samples is final (its median), settled or not."""
        wanted: dict[str, tuple[Layer, int, int]] = {}
        for layer in self.layers:
            for c_in, c_out in self._options(layer):
                wanted.setdefault(layer.signature(c_in, c_out), (layer, c_in, c_out))
        new = sum(sig not in self.cache.entries for sig in wanted)
        for _ in range(self.max_passes):
            todo: dict[str, dict[str, tuple[int, int]]] = {}
            for sig, (layer, c_in, c_out) in wanted.items():
                have = self.cache.samples.get(sig, [])
                if len(have) < self.max_passes and not settled(have, self.min_passes, self.agree):
                    todo.setdefault(layer.name, {})[sig] = (c_in, c_out)
            if not todo:
                break
            for layer in self.layers:
                if layer.name not in todo:
                    continue
                for sig, value in self._time_layer(layer, todo[layer.name]).items():
                    self.cache.add(sig, value)
                self.cache.save()
        return new

    def _time_layer(self, layer: Layer, todo: dict[str, tuple[int, int]]) -> dict[str, float]:
        out = {}
        # ORT/compile entries each need a build; group them in chunks to bound memory.
        items = list(todo.items())
        chunk = 64
        for start in range(0, len(items), chunk):
            built, shapes = {}, {}
            for sig, (c_in, c_out) in items[start : start + chunk]:
                torch.manual_seed(0)
                m = layer.module(c_in, c_out).eval()
                shape = layer.input_shape(c_in)
                x = torch.rand((self.batch_size, *shape))
                built[sig] = build_runtime(m, self.runtime, x, self.threads)
                shapes[sig] = shape
            built[REF] = self.ref
            shapes[REF] = (16, 16, 16)
            for sig, ms in _time_each(
                built, shapes, self.batch_size, self.threads, self.repeats, self.clock
            ):
                out[sig] = ms
        return out

    def _kept_layers(self, removed: Sequence[str]) -> list[Layer]:
        prefixes = tuple(f"{b}." for b in removed)
        return [layer for layer in self.layers if not layer.name.startswith(prefixes)]

    def layer_ms(self, widths: Sequence[int], removed: Sequence[str] = ()) -> float:
        total = 0.0
        for layer in self._kept_layers(removed):
            c_in, c_out = layer.shape(widths)
            sig = layer.signature(c_in, c_out)
            if sig not in self.cache.entries:
                raise PrunekitError(
                    f"no latency entry for {sig} (width not on the grid or table not measured)"
                )
            total += self.cache.entries[sig]
        return total

    def volume(
        self, widths: Sequence[int], removed: Sequence[str] = (), resolution: int | None = None
    ) -> int:
        """Output elements of the kept layers (of one output ``resolution``, if given)."""
        return sum(
            layer.shape(widths)[1] * layer.out_spatial
            for layer in self._kept_layers(removed)
            if resolution is None or layer.out_spatial == resolution
        )

    def features(self, widths: Sequence[int], removed: Sequence[str] = ()) -> list[float]:
        """``[sum_l t_l, A_k / A_dense for each resolution k, 1]`` (module docstring)."""
        dense = self.volume(self.full)
        return [
            self.layer_ms(widths, removed),
            *(self.volume(widths, removed, k) / dense for k in self.resolutions),
            1.0,
        ]

    # -- calibration and prediction -----------------------------------------------------
    def half(self) -> list[int]:
        return [
            min(g, key=lambda w, n=n: abs(w - n / 2))
            for g, n in zip(self.grids, self.full, strict=True)
        ]

    def minimum(self) -> list[int]:
        return [g[0] for g in self.grids]

    def calibration_widths(self, n_random: int = 5, seed: int = 0) -> dict[str, list[int]]:
        """The configurations the rest term is fitted on: dense, half, narrowest and
        ``n_random`` seeded random grid points."""
        gen = torch.Generator().manual_seed(seed)
        out = {"dense": list(self.full), "half": self.half(), "min": self.minimum()}
        for k in range(n_random):
            pick = [g[int(torch.randint(len(g), (1,), generator=gen))] for g in self.grids]
            out[f"random{k}"] = pick
        return out

    def calibrate(self, n_random: int = 12, seed: int = 0, rounds: int = 3) -> dict[str, Any]:
        """Fit ``T(w) = a sum_l t_l(w) + r0 + sum_k r_k A_k(w)/A_dense`` (module
        docstring) to whole-model measurements (interleaved, reference units) of
        :meth:`calibration_widths`. ``a`` absorbs what isolated layer timings miss in a
        whole model (cold caches between layers: measured 1-4x here at batch 64).
        Each configuration's latency is the median over ``rounds`` separate
        measurements (like the table's passes: one burst of load moves one round)."""
        if rounds < 1:
            raise PrunekitError(f"rounds must be >= 1, got {rounds}")
        self.measure_table()
        configs = self.calibration_widths(n_random, seed)
        models = {k: self.with_widths(self.model, w) for k, w in configs.items()}
        runs = [self.measure(models, repeats=max(self.repeats, 9)) for _ in range(rounds)]
        measured = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        a_mat = torch.tensor([self.features(w) for w in configs.values()], dtype=torch.float64)
        y = torch.tensor([measured[k] for k in configs], dtype=torch.float64)
        coef = fit_nonnegative(a_mat, y)
        if coef[0] <= 0:  # the layer sum must count: fall back to a pure scale of it
            coef = torch.zeros(a_mat.shape[1], dtype=torch.float64)
            coef[0] = float((y / a_mat[:, 0]).median())
        self.coef = tuple(float(c) for c in coef)
        self.rest = self.coef[1:]
        fitted = a_mat @ coef
        errors = {k: float(fitted[i] / y[i] - 1) for i, k in enumerate(configs)}
        return {
            "scale": self.coef[0],
            "volume_terms": dict(zip(map(str, self.resolutions), self.coef[1:-1], strict=True)),
            "r0": self.coef[-1],
            "measured": {k: measured[k] for k in configs},
            "fit_error": errors,
            "ref_ms": measured["ref_ms"],
        }

    def measure(
        self,
        models: dict[str, nn.Module],
        repeats: int = 15,
        clock: str | None = None,
        per_call_median: bool = False,
    ) -> dict[str, float]:
        """Whole models deployed in the runtime, in reference units, plus ``"ref_ms"``."""
        ms = measure_deployed(
            models,
            self.input_shape,
            self.runtime,
            self.batch_size,
            self.threads,
            repeats=repeats,
            extra={REF: self.ref},
            clock=clock or self.clock,
            per_call_median=per_call_median,
        )
        ref = ms.pop(REF)
        return {**{k: v / ref for k, v in ms.items()}, "ref_ms": ref}

    def predict(self, widths: Sequence[int], removed: Sequence[str] = ()) -> float:
        """Predicted latency (reference units) of grid ``widths`` with the residual
        blocks ``removed`` (their layers drop out of the sums; see :mod:`.depth`)."""
        if self.rest is None:
            raise PrunekitError("LatencyModel.calibrate() must run before predict()")
        return sum(c * f for c, f in zip(self.coef, self.features(widths, removed), strict=True))

    def with_widths(
        self,
        model: nn.Module,
        widths: Sequence[int],
        scores: Sequence[torch.Tensor] | None = None,
    ) -> nn.Module:
        """A physically narrower copy of ``model`` (same architecture as ``self.model``):
        group ``g`` keeps its ``widths[g]`` best units by ``scores[g]`` (default: the first)."""
        from ..pruning.masks import clone
        from ..surgery.shrink import apply_plan

        small = clone(model)
        index = {p: i for i, g in enumerate(self.groups) for p in g.producers}
        for g in (g for g in analyze(small) if g.fixed is None):
            # after depth pruning a group may have lost members: match by its first producer
            if g.producers[0] not in index:
                raise PrunekitError(f"with_widths: group {g.name!r} is not in the table")
            i = index[g.producers[0]]
            w = widths[i]
            if w == g.size:
                continue
            if scores is None:
                idx = torch.arange(w)
            else:
                idx = torch.sort(torch.topk(scores[i], w).indices).values
            apply_plan(small, g, idx)
        return small


def fit_nonnegative(a_mat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``c >= 0`` minimizing ``sum_i ((a_mat c)_i / y_i - 1)^2`` (relative error), by
    least squares on the active features: the most negative coefficient's feature is
    dropped and the fit redone until none is negative (an active-set pass in the
    spirit of Lawson-Hanson NNLS; enough for the handful of features here)."""
    rel = a_mat / y.unsqueeze(1)
    ones = torch.ones_like(y).unsqueeze(1)
    active = list(range(a_mat.shape[1]))
    coef = torch.zeros(a_mat.shape[1], dtype=a_mat.dtype)
    while active:
        sol = torch.linalg.lstsq(rel[:, active], ones).solution.flatten()
        if bool((sol >= 0).all()):
            coef[active] = sol
            break
        active.pop(int(sol.argmin()))
    return coef


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


def relative_spread(samples: Sequence[float]) -> float:
    """(max - min) / median of repeated measurements."""
    med = statistics.median(samples)
    return (max(samples) - min(samples)) / med if med else 0.0

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

Timing (the thread clock, the reference layer every timing is divided by): :mod:`.timing`.
The on-disk cache and the passes each entry is measured in: :mod:`.cache`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..pruning.dependency import UnitGroup, analyze
from ..registry import PrunekitError
from .cache import AGREE, MAX_PASSES, MIN_PASSES, TableCache, settled, table_key
from .timing import (
    CLOCKS,
    REF,
    TABLE_RUNTIMES,
    _time_each,
    build_runtime,
    check_runtime,
    compare,
    measure_deployed,
    reference,
)

# re-exported: callers import these from .table
__all__ = [
    "CLOCKS",
    "REF",
    "TABLE_RUNTIMES",
    "LatencyModel",
    "Layer",
    "TableCache",
    "build_runtime",
    "check_runtime",
    "compare",
    "fit_nonnegative",
    "fit_selected",
    "grid",
    "measure_deployed",
    "settled",
    "table_key",
]


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

    def calibrate(
        self, n_random: int = 12, seed: int = 0, rounds: int = 3, select: str = "all"
    ) -> dict[str, Any]:
        """Fit ``T(w) = a sum_l t_l(w) + r0 + sum_k r_k A_k(w)/A_dense`` (module
        docstring) to whole-model measurements (interleaved, reference units) of
        :meth:`calibration_widths`. ``a`` absorbs what isolated layer timings miss in a
        whole model (cold caches between layers: measured 1-4x here at batch 64).
        Each configuration's latency is the median over ``rounds`` separate
        measurements (like the table's passes: one burst of load moves one round).
        ``select``: ``"all"`` fits every feature; ``"loo"`` only the subset (always with
        the layer sum) of smallest leave-one-out error (:func:`fit_selected`)."""
        if rounds < 1:
            raise PrunekitError(f"rounds must be >= 1, got {rounds}")
        if select not in SELECT:
            raise PrunekitError(f"select must be one of {', '.join(SELECT)}, got {select!r}")
        self.measure_table()
        configs = self.calibration_widths(n_random, seed)
        models = {k: self.with_widths(self.model, w) for k, w in configs.items()}
        runs = [self.measure(models, repeats=max(self.repeats, 9)) for _ in range(rounds)]
        measured = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        a_mat = torch.tensor([self.features(w) for w in configs.values()], dtype=torch.float64)
        y = torch.tensor([measured[k] for k in configs], dtype=torch.float64)
        #: the calibration rows, kept so that fits can be compared on the same data
        self.calibration = (a_mat, y)
        coef = fit_nonnegative(a_mat, y) if select == "all" else fit_selected(a_mat, y)[0]
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


SELECT = ("all", "loo")


def fit_selected(a_mat: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[int], float]:
    """The :func:`fit_nonnegative` fit on the feature subset -- column 0 (the layer
    sum) always, any of the others -- of smallest leave-one-out error (root mean square
    of ``prediction_i / y_i - 1`` with row ``i`` left out of the fit); smaller subsets
    win ties. Returns (coefficients over all columns, the subset, its LOO error). With
    a handful of noisy whole-model timings, five free coefficients fit the noise: at
    batch 1 the fitted coefficients swung by 10x between runs of the same model."""
    n, k = a_mat.shape
    subsets = sorted(
        ([0, *(j for j in range(1, k) if mask >> (j - 1) & 1)] for mask in range(2 ** (k - 1))),
        key=len,
    )
    best: tuple[float, list[int]] | None = None
    for cols in subsets:
        if len(cols) >= n:
            continue
        errs = []
        for i in range(n):
            keep = [r for r in range(n) if r != i]
            c = fit_nonnegative(a_mat[keep][:, cols], y[keep])
            errs.append(float(a_mat[i, cols] @ c / y[i] - 1))
        score = math.sqrt(sum(e * e for e in errs) / n)
        if best is None or score < best[0] - 1e-12:
            best = (score, cols)
    if best is None:
        raise PrunekitError(f"need more calibration rows than features, got {n}")
    coef = torch.zeros(k, dtype=a_mat.dtype)
    coef[best[1]] = fit_nonnegative(a_mat[:, best[1]], y)
    return coef, best[1], best[0]


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

"""Entropy of a unit's activations: estimators, activation taps and calibration passes.

What "the entropy of theta_j" (spec §3) means in prunekit
---------------------------------------------------------
Unit ``j`` of a prunable layer is an output neuron of a Linear layer or an output
channel (filter) of a conv layer. Its *activation* on one example is a scalar:

- where the activation is read: the layer's output after the per-unit operations
  that follow it, up to and including its nonlinearity (``conv -> BatchNorm -> ReLU``
  is read after the ReLU; ``fc -> ReLU`` after the ReLU; ``conv2 -> bn2 -> (+ shortcut)``
  of a residual block after ``bn2``, since the sum is no longer the unit's own).
  Found by tracing the model with ``torch.fx`` (see :func:`find_taps`); a model that
  cannot be traced falls back to the layer's raw output. A dead-ReLU unit therefore
  reads as the constant 0, and scores lowest under both estimators;
- conv channels are spatially pooled per example (mean over H, W), as in Luo & Wu 2017
  ("An entropy-based pruning method for CNN compression"); a Linear unit on inputs
  with extra dimensions ``(N, ..., C)`` is pooled over them likewise.

``H_j`` is then the entropy of that scalar's distribution over the data, in nats, by
one of two estimators:

- ``histogram``: the unit's values are binned into ``bins`` equal-width bins over
  the unit's own ``[min, max]`` on the data, ``p_k`` = fraction in bin k and
  ``H = -sum_k p_k log p_k``. In ``[0, log(bins)]``; 0 for a constant unit;
  invariant to the unit's scale and offset (it measures the *shape* of the
  distribution: a unit that is zero on most examples scores low).
- ``gaussian``: the differential entropy of a Gaussian with the unit's variance,
  ``H = 0.5 * log(2 pi e (sigma^2 + eps))`` with the variance floor ``eps``
  (default :data:`VAR_FLOOR` = 1e-6, so ``H >= 0.5 log(2 pi e 1e-6) = -5.49``). It can be
  negative (``H < 0`` iff ``sigma^2 + eps < 1/(2 pi e)``, sigma < 0.242), depends on the
  activation's scale (``log sigma`` plus a constant), and is differentiable, so it can
  sit in a training loss (:mod:`prunekit.pruning.objectives.entropy`). The floor keeps
  ``log`` finite for constant units and bounds ``dH/dsigma = sigma / (sigma^2 + eps)``
  by ``1 / (2 sqrt(eps))``.

Calibration passes (:func:`unit_entropies`) never keep the data's activations: the
Gaussian estimator keeps per-unit running moments (count, mean, M2; Chan et al.'s
parallel update in float64), the histogram estimator a first pass for per-unit
min/max and a second for per-unit bin counts (``units x bins``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import PrunekitError

LOG_2PI_E = math.log(2.0 * math.pi * math.e)
VAR_FLOOR = 1e-6
ESTIMATORS = ("histogram", "gaussian")
DEFAULT_BINS = 32
DEFAULT_BATCH_SIZE = 256


# -- estimators ------------------------------------------------------------------------
def gaussian_entropy(var: Tensor, eps: float = VAR_FLOOR) -> Tensor:
    """``0.5 * log(2 pi e (var + eps))`` in nats, elementwise; differentiable."""
    return 0.5 * (LOG_2PI_E + torch.log(var + eps))


def batch_gaussian_entropy(acts: Tensor, eps: float = VAR_FLOOR) -> Tensor:
    """Per-unit Gaussian entropy of ``acts`` of shape ``(N, units)``, with the (biased)
    variance over the N examples; differentiable w.r.t. ``acts``."""
    if acts.dim() != 2 or acts.shape[0] < 2:
        raise PrunekitError(f"need activations of shape (N >= 2, units), got {tuple(acts.shape)}")
    return gaussian_entropy(acts.var(0, unbiased=False), eps)


def histogram_counts(acts: Tensor, lo: Tensor, hi: Tensor, bins: int) -> Tensor:
    """Counts ``(units, bins)`` of ``acts`` ``(N, units)`` in equal-width bins over each
    unit's ``[lo, hi]``. Values outside are clipped to the end bins; a unit with
    ``hi == lo`` puts everything in bin 0."""
    n, units = acts.shape
    width = (hi - lo).clamp(min=0)
    scaled = (acts - lo) / torch.where(width > 0, width, torch.ones_like(width)) * bins
    idx = scaled.floor().clamp(0, bins - 1).long()
    idx = torch.where(width > 0, idx, torch.zeros_like(idx))
    flat = idx + torch.arange(units) * bins  # one histogram per unit in one bincount
    return (
        torch.bincount(flat.flatten(), minlength=units * bins).view(units, bins).to(torch.float64)
    )


def entropy_from_counts(counts: Tensor) -> Tensor:
    """``-sum_k p_k log p_k`` (nats) per row of a ``(units, bins)`` count table."""
    total = counts.sum(1, keepdim=True).clamp(min=1)
    p = counts / total
    h = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(1)
    return h + 0.0  # a constant unit gives -0.0; IEEE -0.0 + 0.0 is +0.0


def histogram_entropy(acts: Tensor, bins: int = DEFAULT_BINS) -> Tensor:
    """Per-unit histogram entropy of ``acts`` ``(N, units)`` (one batch, for tests/plots)."""
    check_bins(bins)
    acts = acts.detach().double()
    lo, hi = acts.min(0).values, acts.max(0).values
    return entropy_from_counts(histogram_counts(acts, lo, hi, bins))


def check_bins(bins: object) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise PrunekitError(f"bins must be an integer >= 2, got {bins!r}")
    return bins


def check_estimator(estimator: object) -> str:
    if estimator not in ESTIMATORS:
        raise PrunekitError(
            f"entropy estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}"
        )
    return str(estimator)


class RunningMoments:
    """Per-unit count/mean/M2 merged batch by batch (Chan, Golub & LeVeque 1979)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, acts: Tensor) -> None:
        x = acts.detach().double()
        nb = x.shape[0]
        mb = x.mean(0)
        m2b = ((x - mb) ** 2).sum(0)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n

    def var(self) -> Tensor:
        """Biased (population) variance, like :func:`batch_gaussian_entropy`."""
        assert self.m2 is not None
        return self.m2 / max(self.n, 1)


# -- where each unit's activation is read ------------------------------------------------
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ACT_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.PReLU,
)
_ACT_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardtanh,
    torch.sigmoid,
    torch.tanh,
    F.softplus,
}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}


@dataclass
class Tap:
    """Where unit activations of prunable layer ``layer`` are read.

    ``hook``: qualified name of the module whose forward output is hooked (the layer
    itself, its BatchNorm, or its activation module); ``post``: an out-of-place
    nonlinearity applied to that output when the activation is a function (or a
    module shared by several layers) that cannot be hooked on its own; ``path``:
    the chain in words, recorded in exports.
    """

    layer: str
    hook: str
    post: Callable[[Tensor], Tensor] | None
    path: str


def _functional(node: object, modules: dict[str, nn.Module]) -> Callable[[Tensor], Tensor] | None:
    """An out-of-place callable computing the activation node on a tensor, or None."""
    from torch import fx

    assert isinstance(node, fx.Node)
    extra = list(node.args[1:])
    kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
    if any(isinstance(a, fx.Node) for a in [*extra, *kwargs.values()]):
        return None
    if node.op == "call_function" and node.target in _ACT_FUNCTIONS:
        fn = node.target
        return lambda t: fn(t, *extra, **kwargs)  # type: ignore[operator]
    if node.op == "call_method" and node.target in _ACT_METHODS and not extra:
        name = _ACT_METHODS[str(node.target)]
        return lambda t: getattr(t, name)()
    if node.op == "call_module" and isinstance(modules[str(node.target)], _ACT_MODULES):
        act = modules[str(node.target)]
        inplace = getattr(act, "inplace", False)
        return lambda t: act.forward(t.clone() if inplace else t)
    return None


def find_taps(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, Tap]:
    """The :class:`Tap` of every layer in ``layers`` (qualified name -> module).

    The model is traced with ``torch.fx``; from each layer's call the graph is followed
    while the value has a single user that is a BatchNorm or an activation. A model
    that ``torch.fx`` cannot trace falls back to the layers' raw outputs.
    """
    from torch import fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any trace failure means "no graph", not a user error
        return {
            name: Tap(name, name, None, f"{name} (raw output: model not traceable)")
            for name in layers
        }
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    taps = {}
    for node in graph.nodes:
        name = str(node.target)
        if node.op != "call_module" or name not in layers:
            continue
        hook, post, path, cur = name, None, [name], node
        while len(cur.users) == 1:
            (user,) = cur.users
            target = str(user.target)
            is_mod = user.op == "call_module"
            if is_mod and isinstance(modules[target], _NORMS) and calls[target] == 1:
                hook, cur = target, user
                path.append(target)
                continue
            if is_mod and isinstance(modules[target], _ACT_MODULES) and calls[target] == 1:
                hook = target
                path.append(target)
            elif (fn := _functional(user, modules)) is not None:
                post = fn
                path.append(target if is_mod else getattr(user.target, "__name__", target))
            break
        taps[name] = Tap(name, hook, post, " -> ".join(path))
    for name in layers:
        if name not in taps:
            raise PrunekitError(
                f"layer {name!r} is never called in the model's forward; "
                "its activations cannot be hooked"
            )
        if calls.get(name, 0) > 1:
            raise PrunekitError(
                f"layer {name!r} is called {calls[name]} times per forward; "
                "its units' activations are ambiguous and cannot be hooked"
            )
    return taps


def pool_units(out: object, layer: str, module: nn.Module) -> Tensor:
    """The hooked output as ``(N, units)``: conv channels pooled over space per example,
    a Linear's extra middle dimensions pooled likewise."""
    units = original_out_units(module)
    if not isinstance(out, Tensor) or out.dim() < 2:
        raise PrunekitError(
            f"layer {layer!r}: hooked output is not a batched tensor; "
            "its activations cannot be hooked"
        )
    if isinstance(module, nn.Linear):
        pooled = out if out.dim() == 2 else out.flatten(1, -2).mean(1)
    else:
        pooled = out if out.dim() == 2 else out.flatten(2).mean(2)
    if pooled.shape[1] != units:
        raise PrunekitError(
            f"layer {layer!r}: hooked output has {pooled.shape[1]} channels, "
            f"the layer has {units} units; its activations cannot be hooked"
        )
    return pooled


def original_out_units(module: nn.Module) -> int:
    w = getattr(module, "weight_orig", None)
    w = w if w is not None else module.weight
    return int(w.shape[0])


@contextmanager
def tapped(
    model: nn.Module, layers: dict[str, nn.Module], sink: Callable[[str, Tensor], None]
) -> Iterator[dict[str, Tap]]:
    """Forward hooks that call ``sink(layer, acts (N, units))`` on every forward of
    ``model`` while the context is open; removed on exit."""
    taps = find_taps(model, layers)
    modules = dict(model.named_modules())
    handles = []
    for tap in taps.values():

        def hook(_m: nn.Module, _inp: object, out: object, tap: Tap = tap) -> None:
            acts = tap.post(out) if tap.post is not None and isinstance(out, Tensor) else out
            sink(tap.layer, pool_units(acts, tap.layer, layers[tap.layer]))

        handles.append(modules[tap.hook].register_forward_hook(hook))
    try:
        yield taps
    finally:
        for h in handles:
            h.remove()


# -- calibration passes -------------------------------------------------------------------
def calibration_batches(
    x: Tensor, batch_size: int = DEFAULT_BATCH_SIZE, batches: int | None = None
) -> list[Tensor]:
    """The first ``batches`` full batches of ``x`` (all full batches when None); the
    remainder that does not fill a batch is left out, so every batch weighs the same."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise PrunekitError(f"calibration batch size must be an integer >= 2, got {batch_size!r}")
    n = int(x.shape[0])
    if n == 0:
        raise PrunekitError("calibration set is empty; entropy needs data")
    if n < batch_size:
        raise PrunekitError(
            f"calibration set has {n} examples, fewer than one batch of "
            f"{batch_size}; give more data or a smaller calibration_batch_size"
        )
    available = n // batch_size
    if batches is not None:
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise PrunekitError(f"calibration_batches must be an integer >= 1, got {batches!r}")
        if batches > available:
            raise PrunekitError(
                f"calibration set has {n} examples: {batches} batches of "
                f"{batch_size} need {batches * batch_size}; lower "
                "calibration_batches or calibration_batch_size"
            )
        available = batches
    return [x[i * batch_size : (i + 1) * batch_size] for i in range(available)]


@torch.no_grad()
def unit_entropies(
    model: nn.Module,
    x: Tensor,
    layers: dict[str, nn.Module] | None = None,
    *,
    estimator: str = "histogram",
    bins: int = DEFAULT_BINS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batches: int | None = None,
    eps: float = VAR_FLOOR,
) -> dict[str, Tensor]:
    """Per-unit activation entropy ``{layer: H (units,)}`` in nats over the calibration
    inputs ``x`` (model in eval mode; restored afterwards). ``layers`` defaults to every
    prunable layer but the classifier head."""
    from .masks import prunable_modules

    check_estimator(estimator)
    check_bins(bins)
    layers = layers if layers is not None else prunable_modules(model, include_last=False)
    chunks = calibration_batches(x, batch_size, batches)
    was_training = model.training
    model.eval()
    try:
        if estimator == "gaussian":
            moments = {name: RunningMoments() for name in layers}
            _passes(model, layers, chunks, lambda n, a: moments[n].update(a))
            return {n: gaussian_entropy(m.var(), eps).float() for n, m in moments.items()}
        lo: dict[str, Tensor] = {}
        hi: dict[str, Tensor] = {}

        def extremes(name: str, acts: Tensor) -> None:
            a = acts.double()
            lo[name] = torch.minimum(lo[name], a.min(0).values) if name in lo else a.min(0).values
            hi[name] = torch.maximum(hi[name], a.max(0).values) if name in hi else a.max(0).values

        _passes(model, layers, chunks, extremes)
        counts: dict[str, Tensor] = {}

        def fill(name: str, acts: Tensor) -> None:
            c = histogram_counts(acts.double(), lo[name], hi[name], bins)
            counts[name] = counts[name] + c if name in counts else c

        _passes(model, layers, chunks, fill)
        return {n: entropy_from_counts(counts[n]).float() for n in layers}
    finally:
        model.train(was_training)


def _passes(
    model: nn.Module,
    layers: dict[str, nn.Module],
    chunks: list[Tensor],
    sink: Callable[[str, Tensor], None],
) -> None:
    """One forward per chunk; each layer's hook must fire exactly once per forward."""
    seen: dict[str, int] = {}

    def counting(name: str, acts: Tensor) -> None:
        seen[name] = seen.get(name, 0) + 1
        sink(name, acts)

    with tapped(model, layers, counting) as taps:
        for chunk in chunks:
            seen.clear()
            model(chunk)
            check_fired(taps, seen)


def check_fired(taps: dict[str, Tap], seen: dict[str, int]) -> None:
    for name, tap in taps.items():
        if seen.get(name, 0) != 1:
            raise PrunekitError(
                f"layer {name!r}: the hook on {tap.hook!r} fired {seen.get(name, 0)} times in "
                "one forward (expected once); its activations cannot be hooked"
            )

"""Activation taps: where the activation of each unit of a prunable layer is read.

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import PrunekitError

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

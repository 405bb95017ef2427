"""The tables of :mod:`.groups`: how each module type and function treats units.

A module rule is ``rule(spaces, module_path, module, input) -> output``; function
calls go through :class:`Walker`. Anything not listed here is refused through
``Spaces.refuse`` (raised later unless the units it touches are fixed anyway).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..masks import transposed_types
from .spaces import KIND_WORDS, Spaces, Val


def _conv(a: Spaces, name: str, m: nn.Conv2d, v: Val) -> Val:
    if m.groups == 1:
        a.consume(v, name, ("chan",), "convolution")
        return a.produce(name, m.out_channels, "chan")
    if m.groups == m.in_channels == m.out_channels:  # depthwise: unit c in, unit c out
        return a.follow(v, name) if v.kind in ("chan", "any") else a.refuse(v, f"conv {name!r}")
    return a.refuse(
        v, f"grouped convolution {name!r} (groups={m.groups}, not depthwise) is not supported"
    )


def _linear(a: Spaces, name: str, m: nn.Linear, v: Val) -> Val:
    a.consume(v, name, ("feat", "flat"), "Linear")
    return a.produce(name, m.out_features, "feat")


def _linear_transposed(a: Spaces, name: str, m: nn.Module, v: Val) -> Val:
    """transformers' ``Conv1D``: a Linear with weight ``(in, out)``; ``nf`` outputs."""
    a.consume(v, name, ("feat", "flat"), "Conv1D")
    return a.produce(name, m.nf, "feat")


def _batchnorm(a: Spaces, name: str, m: nn.Module, v: Val) -> Val:
    if v.kind in ("chan", "feat", "any"):
        return a.follow(v, name)
    return a.refuse(v, f"{type(m).__name__} {name!r} gets a {KIND_WORDS[v.kind]}")


def _norm_across_units(a: Spaces, name: str, m: nn.Module, v: Val) -> Val:
    """GroupNorm / LayerNorm / InstanceNorm: statistics over several units, so removing
    one (even a zero one) changes the others' outputs: their units stay (fixed)."""
    a.fix(v, f"{type(m).__name__} {name!r} normalizes over several units")
    return v


def _passthrough(a: Spaces, name: str, m: nn.Module, v: Val) -> Val:
    return v


def _pool(a: Spaces, name: str, m: nn.Module, v: Val) -> Val:
    if v.kind in ("chan", "any"):
        return v
    return a.refuse(v, f"{type(m).__name__} {name!r} gets a {KIND_WORDS[v.kind]}")


def _flatten_module(a: Spaces, name: str, m: nn.Flatten, v: Val) -> Val:
    return _flatten(a, v, m.start_dim, m.end_dim, f"Flatten {name!r}")


def _flatten(a: Spaces, v: Val, start: int, end: int, what: str) -> Val:
    if start != 1 or end != -1:
        return a.refuse(v, f"{what} with start_dim={start}, end_dim={end} (only 1, -1)")
    return Val(v.space, "flat" if v.kind == "chan" else v.kind)


# Activations listed here map 0 to 0, so a removed unit stays exactly zero through them.
ZERO_PRESERVING = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Mish,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
)
POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)

MODULE_RULES: dict[type[nn.Module], Callable[..., Val]] = {
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Linear: _linear,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.Flatten: _flatten_module,
    nn.GroupNorm: _norm_across_units,
    nn.LayerNorm: _norm_across_units,
    nn.InstanceNorm1d: _norm_across_units,
    nn.InstanceNorm2d: _norm_across_units,
    **{t: _passthrough for t in ZERO_PRESERVING},
    **{t: _pool for t in POOLS},
}

_ADD = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}
_MUL = {operator.mul, operator.truediv, operator.imul, torch.mul, torch.div}
_FN_PASS = {
    torch.relu,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.hardtanh,
    F.hardswish,
    torch.tanh,
    F.dropout,
    F.dropout2d,
}
_FN_POOL = {
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
}
_METHOD_PASS = {"relu", "relu_", "tanh", "contiguous", "clone", "float"}
_METHOD_ADD = {"add", "sub", "add_", "sub_"}
_METHOD_MUL = {"mul", "div", "mul_", "div_"}
_SHAPE_QUERIES = {"size", "dim", "numel"}


def tracked(args: Any) -> Iterator[Val]:
    if isinstance(args, Val):
        yield args
    elif isinstance(args, list | tuple):
        for a in args:
            yield from tracked(a)
    elif isinstance(args, dict):
        for a in args.values():
            yield from tracked(a)


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    path = next(reversed(stack.values()))[0] if stack else ""
    return f"in {path!r}" if path else "at the top level of forward()"


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", str(node.target))


class Walker:
    def __init__(self, a: Spaces) -> None:
        self.a = a

    def arg(self, env: dict[fx.Node, Any], x: Any) -> Any:
        return fx.node.map_arg(x, lambda n: env[n])

    def module(self, node: fx.Node, v: Any) -> Any:
        name = str(node.target)
        m = self.a.gm.get_submodule(name)
        rule = next((MODULE_RULES[t] for t in type(m).__mro__ if t in MODULE_RULES), None)
        if rule is None and isinstance(m, transposed_types() or ()):
            rule = _linear_transposed
        if not isinstance(v, Val):  # e.g. a layer applied to a constant
            return None
        if rule is None:
            return self.a.refuse(v, f"unsupported layer {type(m).__name__} at {name!r}")
        return rule(self.a, name, m, v)

    def function(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        found = list(tracked((args, kwargs)))
        if not found:
            return None  # pure constant arithmetic (shapes, scalars)
        target, method = node.target, node.op == "call_method"
        if method and target in _SHAPE_QUERIES or target is getattr:
            return None
        op = f"{_op_name(node)} {_where(node)}"
        if (target in _ADD or method and target in _METHOD_ADD) and len(args) >= 2:
            return self.binary(args[0], args[1], op, "add")
        if (target in _MUL or method and target in _METHOD_MUL) and len(args) >= 2:
            div = target in (operator.truediv, torch.div) or method and target.startswith("div")
            return self.binary(args[0], args[1], op, "div" if div else "mul")
        v = args[0] if args else None
        if not isinstance(v, Val) or len(found) > 1:
            out = self.a.refuse(found[0], f"unsupported operation {op}")
            for other in found[1:]:  # every input is tied to the opaque result
                self.a.union(out.space, other.space)
            return out
        if target in _FN_PASS or method and target in _METHOD_PASS:
            return v
        if target in _FN_POOL:
            return v if v.kind in ("chan", "any") else self.a.refuse(v, f"pooling {op}")
        if target is torch.flatten or method and target == "flatten":
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            return _flatten(self.a, v, start, end, op)
        if method and target in ("view", "reshape") or target is torch.reshape:
            shape = args[1:] if method else args[1]
            shape = shape[0] if len(shape) == 1 and isinstance(shape[0], list | tuple) else shape
            if len(shape) == 2 and shape[1] == -1:
                return _flatten(self.a, v, 1, -1, op)
            return self.a.refuse(v, f"reshape to {len(shape)} dims {op} (only (n, -1))")
        return self.a.refuse(v, f"unsupported operation {op}")

    def binary(self, x: Any, y: Any, op: str, kind: str) -> Any:
        if isinstance(x, Val) and isinstance(y, Val):
            kinds = {x.kind, y.kind} - {"any"}
            if len(kinds) > 1:
                return self.a.refuse(x, f"{op} mixes a {' and a '.join(sorted(kinds))} tensor")
            return Val(self.a.union(x.space, y.space), kinds.pop() if kinds else "any")
        v, const = (x, y) if isinstance(x, Val) else (y, x)
        if v.kind == "any":
            return v
        if kind == "add":  # a constant added to a unit makes a removed unit nonzero
            self.a.fix(v, f"a constant is added to it ({op})")
            return v
        numel = (
            const.numel()
            if isinstance(const, torch.Tensor)
            else (1 if isinstance(const, int | float) else None)
        )
        if v is y and kind == "div":
            return self.a.refuse(v, f"{op} divides by the units")
        if numel != 1:
            return self.a.refuse(v, f"{op} by a per-unit constant")
        return v

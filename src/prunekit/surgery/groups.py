"""Dependency groups: which tensors must shrink together when output units are removed.

The model is traced with ``torch.fx`` and every *unit space* (the out-features of a
Linear, the out-channels of a conv) is followed through the graph:

==============  ==============================================  ==========================
role            modules / ops                                   what is sliced
==============  ==============================================  ==========================
producer        Conv1d/Conv2d (groups=1), Linear                weight dim 0, bias
follower        BatchNorm1d/2d, depthwise conv (groups=C)       weight, bias, running stats
consumer        Conv1d/Conv2d, Linear                           weight dim 1; after a
                                                                flatten, each channel is
                                                                ``fan = in_features / C``
                                                                consecutive inputs (its
                                                                H*W positions, NCHW order)
pass-through    ReLU-like activations with f(0) = 0, pooling,   nothing
                dropout, identity, flatten(1), view(n, -1)
tie             elementwise add/sub/mul of two tracked tensors  unit c of both goes together
                (a residual addition)
==============  ==============================================  ==========================

A *group* is the union of tied spaces (in ``resnet20`` the stem conv and every
block's ``conv2``/shortcut of a stage form one group). A group is *fixed* (never
pruned) when it reaches the model input or output, or has a constant added to it.
Any other operation on a tracked tensor, a layer type not in the tables (named with
its module path), or a grouped convolution that is not depthwise makes the analysis
raise :class:`UnsupportedModel` — unless the tensor belongs to a fixed group, where
nothing is removed anyway.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..registry import PrunekitError


class UnsupportedModel(PrunekitError):
    """The model uses an operation the surgery cannot follow."""


@dataclass
class UnitGroup:
    """Units that are removed together: unit ``c`` of every member goes or stays."""

    size: int
    producers: list[str] = field(default_factory=list)
    followers: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (module, fan)
    fixed: str | None = None  # why the group can never be pruned; None = prunable

    @property
    def name(self) -> str:
        return ", ".join(self.producers)


@dataclass(frozen=True)
class _Val:
    """A traced tensor whose unit dimension is indexed by ``space``.

    kind: ``chan`` (dim 1 of a feature map), ``feat`` (features of a 2-D tensor),
    ``flat`` (a flattened feature map: dim 1, each unit spans ``fan`` entries),
    ``any`` (derived from the model input: fixed, so only followed, never sliced).
    """

    space: int
    kind: str


class _Analysis:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.parent: list[int] = []
        self.info: list[dict[str, Any]] = []
        self.module_out: dict[str, int] = {}  # a module called twice shares its spaces
        self.module_in: dict[str, int] = {}
        self.pending: list[tuple[int, str]] = []  # (space, error) raised if space is prunable

    # -- union-find over spaces ---------------------------------------------------------
    def new_space(self, size: int | None = None, fixed: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.info.append({"size": size, "producers": [], "followers": [], "consumers": [],
                          "fixed": fixed})
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            ia, ib = self.info[ra], self.info[rb]
            for key in ("producers", "followers", "consumers"):
                ia[key] += [x for x in ib[key] if x not in ia[key]]
            ia["fixed"] = ia["fixed"] or ib["fixed"]
            ia["size"] = ia["size"] or ib["size"]
        return ra

    def fix(self, v: _Val, reason: str) -> None:
        info = self.info[self.find(v.space)]
        info["fixed"] = info["fixed"] or reason

    def add(self, s: int, key: str, item: Any) -> None:
        lst = self.info[self.find(s)][key]
        if item not in lst:
            lst.append(item)

    # -- roles ----------------------------------------------------------------------------
    def refuse(self, v: _Val, message: str) -> _Val:
        """Record an error for ``v``'s group; the result is a fresh fixed tensor."""
        self.pending.append((v.space, message))
        return _Val(self.new_space(fixed=message), "any")

    def consume(self, v: _Val, name: str, kinds: tuple[str, ...], what: str) -> bool:
        if v.kind != "any" and v.kind not in kinds:
            self.refuse(v, f"{what} {name!r} gets a {_KIND_WORDS[v.kind]}")
            return False
        if name in self.module_in:
            self.union(self.module_in[name], v.space)
        self.module_in[name] = v.space
        self.add(v.space, "consumers", name)
        return True

    def produce(self, name: str, size: int, kind: str) -> _Val:
        s = self.new_space(size)
        if name in self.module_out:
            s = self.union(self.module_out[name], s)
        self.module_out[name] = s
        self.add(s, "producers", name)
        return _Val(s, kind)

    def follow(self, v: _Val, name: str) -> _Val:
        self.add(v.space, "followers", name)
        return v


_KIND_WORDS = {"chan": "feature map (flatten it first?)", "feat": "2-D tensor",
               "flat": "flattened feature map", "any": "input tensor"}


# -- module rules: (analysis, module path, module, input) -> output --------------------
def _conv(a: _Analysis, name: str, m: nn.Conv2d, v: _Val) -> _Val:
    if m.groups == 1:
        a.consume(v, name, ("chan",), "convolution")
        return a.produce(name, m.out_channels, "chan")
    if m.groups == m.in_channels == m.out_channels:  # depthwise: unit c in, unit c out
        return a.follow(v, name) if v.kind in ("chan", "any") else a.refuse(v, f"conv {name!r}")
    return a.refuse(v, f"grouped convolution {name!r} (groups={m.groups}, not depthwise) "
                       "is not supported")


def _linear(a: _Analysis, name: str, m: nn.Linear, v: _Val) -> _Val:
    a.consume(v, name, ("feat", "flat"), "Linear")
    return a.produce(name, m.out_features, "feat")


def _batchnorm(a: _Analysis, name: str, m: nn.Module, v: _Val) -> _Val:
    if v.kind in ("chan", "feat", "any"):
        return a.follow(v, name)
    return a.refuse(v, f"{type(m).__name__} {name!r} gets a {_KIND_WORDS[v.kind]}")


def _passthrough(a: _Analysis, name: str, m: nn.Module, v: _Val) -> _Val:
    return v


def _pool(a: _Analysis, name: str, m: nn.Module, v: _Val) -> _Val:
    if v.kind in ("chan", "any"):
        return v
    return a.refuse(v, f"{type(m).__name__} {name!r} gets a {_KIND_WORDS[v.kind]}")


def _flatten_module(a: _Analysis, name: str, m: nn.Flatten, v: _Val) -> _Val:
    return _flatten(a, v, m.start_dim, m.end_dim, f"Flatten {name!r}")


def _flatten(a: _Analysis, v: _Val, start: int, end: int, what: str) -> _Val:
    if start != 1 or end != -1:
        return a.refuse(v, f"{what} with start_dim={start}, end_dim={end} (only 1, -1)")
    return _Val(v.space, "flat" if v.kind == "chan" else v.kind)


# Activations listed here map 0 to 0, so a removed unit stays exactly zero through them.
ZERO_PRESERVING = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh,
                   nn.Hardtanh, nn.Hardswish, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout1d,
                   nn.Dropout2d)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
         nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)

MODULE_RULES: dict[type[nn.Module], Callable[..., _Val]] = {
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Linear: _linear,
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm, nn.Flatten: _flatten_module,
    **{t: _passthrough for t in ZERO_PRESERVING}, **{t: _pool for t in POOLS},
}

_ADD = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}
_MUL = {operator.mul, operator.truediv, operator.imul, torch.mul, torch.div}
_FN_PASS = {torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardtanh,
            F.hardswish, torch.tanh, F.dropout, F.dropout2d}
_FN_POOL = {F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
            F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d}
_METHOD_PASS = {"relu", "relu_", "tanh", "contiguous", "clone", "float"}
_METHOD_ADD = {"add", "sub", "add_", "sub_"}
_METHOD_MUL = {"mul", "div", "mul_", "div_"}
_SHAPE_QUERIES = {"size", "dim", "numel"}


def _tracked(args: Any) -> Iterator[_Val]:
    if isinstance(args, _Val):
        yield args
    elif isinstance(args, list | tuple):
        for a in args:
            yield from _tracked(a)
    elif isinstance(args, dict):
        for a in args.values():
            yield from _tracked(a)


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    path = next(reversed(stack.values()))[0] if stack else ""
    return f"in {path!r}" if path else "at the top level of forward()"


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", str(node.target))


class _Walker:
    def __init__(self, a: _Analysis) -> None:
        self.a = a

    def arg(self, env: dict[fx.Node, Any], x: Any) -> Any:
        return fx.node.map_arg(x, lambda n: env[n])

    def module(self, node: fx.Node, v: Any) -> Any:
        name = str(node.target)
        m = self.a.gm.get_submodule(name)
        rule = next((MODULE_RULES[t] for t in type(m).__mro__ if t in MODULE_RULES), None)
        if not isinstance(v, _Val):  # e.g. a layer applied to a constant
            return None
        if rule is None:
            return self.a.refuse(v, f"unsupported layer {type(m).__name__} at {name!r}")
        return rule(self.a, name, m, v)

    def function(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        tracked = list(_tracked((args, kwargs)))
        if not tracked:
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
        if not isinstance(v, _Val) or len(tracked) > 1:
            return self.a.refuse(tracked[0], f"unsupported operation {op}")
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
        if isinstance(x, _Val) and isinstance(y, _Val):
            kinds = {x.kind, y.kind} - {"any"}
            if len(kinds) > 1:
                return self.a.refuse(x, f"{op} mixes a {' and a '.join(sorted(kinds))} tensor")
            return _Val(self.a.union(x.space, y.space), kinds.pop() if kinds else "any")
        v, const = (x, y) if isinstance(x, _Val) else (y, x)
        if v.kind == "any":
            return v
        if kind == "add":  # a constant added to a unit makes a removed unit nonzero
            self.a.fix(v, f"a constant is added to it ({op})")
            return v
        numel = const.numel() if isinstance(const, torch.Tensor) else (
            1 if isinstance(const, int | float) else None)
        if numel != 1 or v is y and kind == "div":
            return self.a.refuse(v, f"{op} by a per-unit constant")
        return v


def analyze(model: nn.Module) -> list[UnitGroup]:
    """The unit groups of ``model`` (producers in graph order).

    Raises :class:`UnsupportedModel` when the model cannot be traced, or when a
    prunable unit reaches an operation the tables above do not cover.
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...)
        raise UnsupportedModel(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(e).__name__}: {e}); "
            "structured surgery needs a traceable forward()"
        ) from None
    a = _Analysis(gm)
    w = _Walker(a)
    env: dict[fx.Node, Any] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = _Val(a.new_space(fixed="model input"), "any")
        elif node.op == "get_attr":  # a parameter or buffer used as a constant
            env[node] = operator.attrgetter(node.target)(gm)
        elif node.op == "call_module":
            env[node] = w.module(node, w.arg(env, node.args[0]) if node.args else None)
        elif node.op in ("call_function", "call_method"):
            env[node] = w.function(node, w.arg(env, node.args), w.arg(env, node.kwargs))
        elif node.op == "output":
            for v in _tracked(w.arg(env, node.args)):
                a.fix(v, "model output")
    for space, message in a.pending:
        if a.info[a.find(space)]["fixed"] is None:
            raise UnsupportedModel(f"cannot remove units: {message}")
    return _groups(a)


def _groups(a: _Analysis) -> list[UnitGroup]:
    order = {n: i for i, (n, _) in enumerate(a.gm.named_modules())}
    for info in a.info:  # members in registration order, not in order of discovery
        for key in ("producers", "followers", "consumers"):
            info[key].sort(key=order.__getitem__)
    groups: dict[int, UnitGroup] = {}
    for s in range(len(a.parent)):
        root, info = a.find(s), a.info[a.find(s)]
        if root in groups or not info["producers"]:
            continue
        size = info["size"]
        consumers = []
        for name in info["consumers"]:
            m = a.gm.get_submodule(name)
            fan_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            if fan_in % size:
                raise UnsupportedModel(
                    f"cannot map the {size} units of {info['producers'][0]!r} onto the "
                    f"{fan_in} inputs of {name!r}"
                )
            consumers.append((name, fan_in // size))
        for name in info["producers"] + info["followers"]:
            m = a.gm.get_submodule(name)
            n = getattr(m, "out_channels", None) or getattr(m, "out_features", None) or getattr(
                m, "num_features", None)
            if n != size:
                raise UnsupportedModel(f"{name!r} has {n} units, its group has {size}")
        groups[root] = UnitGroup(size, list(info["producers"]), list(info["followers"]),
                                 consumers, info["fixed"])
    return sorted(groups.values(), key=lambda g: order[g.producers[0]])

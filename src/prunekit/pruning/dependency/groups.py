"""Dependency groups: which tensors must shrink together when output units are removed.

The model is traced with ``torch.fx`` and every *unit space* (the out-features of a
Linear, the out-channels of a conv) is followed through the graph:

==============  ==============================================  ==========================
role            modules / ops                                   what is sliced
==============  ==============================================  ==========================
producer        Conv1d/Conv2d (groups=1), Linear,               weight dim 0, bias
                transformers' Conv1D                            (Conv1D: weight dim 1)
follower        BatchNorm1d/2d, depthwise conv (groups=C)       weight, bias, running stats
fixing          GroupNorm, LayerNorm, InstanceNorm (statistics  nothing: the group is fixed
                over several units)
consumer        Conv1d/Conv2d, Linear, Conv1D                   weight dim 1 (Conv1D:
                                                                dim 0); after a
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
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

from ...errors import PrunekitError
from ..masks import transposed_types, unit_dim
from .rules import Walker, tracked
from .spaces import Spaces, Val


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


def analyze(model: nn.Module) -> list[UnitGroup]:
    """The unit groups of ``model`` (producers in graph order).

    Raises :class:`UnsupportedModel` when the model cannot be traced, or when a
    prunable unit reaches an operation the tables of :mod:`.rules` do not cover.
    """
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model))
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...)
        raise UnsupportedModel(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(e).__name__}: {e}); "
            "structured surgery needs a traceable forward()"
        ) from None
    a = Spaces(gm)
    w = Walker(a)
    env: dict[fx.Node, Any] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = Val(a.new_space(fixed="model input"), "any")
        elif node.op == "get_attr":  # a parameter or buffer used as a constant
            env[node] = operator.attrgetter(node.target)(gm)
        elif node.op == "call_module":
            env[node] = w.module(node, w.arg(env, node.args[0]) if node.args else None)
        elif node.op in ("call_function", "call_method"):
            env[node] = w.function(node, w.arg(env, node.args), w.arg(env, node.kwargs))
        elif node.op == "output":
            for v in tracked(w.arg(env, node.args)):
                a.fix(v, "model output")
    for space, message in a.pending:
        if a.info[a.find(space)]["fixed"] is None:
            raise UnsupportedModel(f"cannot remove units: {message}")
    return _groups(a)


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with transformers' ``Conv1D`` kept as one leaf module."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        types = transposed_types()
        return bool(types) and isinstance(m, types) or super().is_leaf_module(m, qualname)


def fan_in(m: nn.Module) -> int:
    """Input features/channels of a Linear, conv or ``Conv1D``."""
    if isinstance(m, nn.Linear):
        return m.in_features
    if unit_dim(m) == 1:
        return int(m.weight.shape[0])
    return m.in_channels


def _groups(a: Spaces) -> list[UnitGroup]:
    order = {n: i for i, (n, _) in enumerate(a.gm.named_modules())}
    for info in a.info:  # members in registration order, not in order of discovery
        for key in ("producers", "followers", "consumers"):
            info[key].sort(key=order.__getitem__)
    groups: dict[int, UnitGroup] = {}
    for s in range(len(a.parent)):
        root, info = a.find(s), a.info[a.find(s)]
        if root in groups or not info["producers"]:
            continue
        size, fixed = info["size"], info["fixed"] or info["opaque"]
        consumers = []
        for name in info["consumers"]:
            m = a.gm.get_submodule(name)
            n_in = fan_in(m)
            if fixed:  # never sliced: no need to map (or check) its inputs
                consumers.append((name, n_in // size))
                continue
            if n_in % size:
                raise UnsupportedModel(
                    f"cannot map the {size} units of {info['producers'][0]!r} onto the "
                    f"{n_in} inputs of {name!r}"
                )
            consumers.append((name, n_in // size))
        for name in [] if fixed else info["producers"] + info["followers"]:
            m = a.gm.get_submodule(name)
            n = (
                getattr(m, "out_channels", None)
                or getattr(m, "out_features", None)
                or getattr(m, "num_features", None)
                or getattr(m, "nf", None)  # transformers' Conv1D
            )
            if n != size:
                raise UnsupportedModel(f"{name!r} has {n} units, its group has {size}")
        groups[root] = UnitGroup(
            size, list(info["producers"]), list(info["followers"]), consumers, fixed
        )
    return sorted(groups.values(), key=lambda g: order[g.producers[0]])

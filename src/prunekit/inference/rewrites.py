"""Exact rewrites of a traced model for deployment (:mod:`prunekit.inference.deploy`,
step 3): ``maxpool(relu(x)) -> relu(maxpool(x))`` and ``Normalize`` folded into the
first layer; the formulas and when each is exact are in that module's docstring."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..models.common import Normalize
from ..pruning.masks import clone
from ..registry import PrunekitError

_MAXPOOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_MAXPOOL_FUNCTIONS = (F.max_pool1d, F.max_pool2d, F.max_pool3d)
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return len(node.args) == 1 and not node.kwargs.get("inplace", False)
    return False


def _is_maxpool(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return isinstance(m, _MAXPOOL_MODULES) and not m.return_indices
    if node.op == "call_function" and node.target in _MAXPOOL_FUNCTIONS:
        # return_indices is the 7th positional argument of F.max_poolNd
        return not node.kwargs.get("return_indices", False) and not (
            len(node.args) > 6 and node.args[6]
        )
    return False


def _swap_relu_maxpool(gm: fx.GraphModule) -> list[str]:
    swapped = []
    for relu in list(gm.graph.nodes):
        if not _is_relu(gm, relu) or len(relu.users) != 1:
            continue
        (pool,) = relu.users
        if not _is_maxpool(gm, pool) or pool.args[0] is not relu:
            continue
        pool.replace_input_with(relu, relu.args[0])
        with gm.graph.inserting_after(pool):
            new = gm.graph.call_function(torch.relu, (pool,))
        pool.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
        gm.graph.erase_node(relu)
        swapped.append(str(pool.target if pool.op == "call_module" else pool.name))
    return swapped


def _module_calls(gm: fx.GraphModule) -> dict[str, int]:
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return calls


def _single_module_user(gm: fx.GraphModule, node: fx.Node, calls: dict[str, int]):
    if len(node.users) != 1:
        return None, None
    (user,) = node.users
    if user.op != "call_module" or calls[user.target] != 1 or user.args[0] is not node:
        return None, None
    return user, gm.get_submodule(user.target)


def _fold_normalize(gm: fx.GraphModule, input_shape: tuple[int, ...]) -> list[str]:
    """Fold ``Normalize`` modules applied to the graph input into the layer after them."""
    calls = _module_calls(gm)
    folded = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), Normalize):
            continue
        if calls[node.target] != 1 or not (
            isinstance(node.args[0], fx.Node) and node.args[0].op == "placeholder"
        ):
            continue  # the stats' broadcast shape is only known at the input
        norm = gm.get_submodule(node.target)
        try:
            m = torch.broadcast_to(norm.mean.detach(), input_shape)
            s = torch.broadcast_to(norm.std.detach(), input_shape)
        except RuntimeError:
            continue
        user, layer = _single_module_user(gm, node, calls)
        if isinstance(user, fx.Node) and isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                continue
            user, layer = _single_module_user(gm, user, calls)
            if not isinstance(layer, nn.Linear):
                continue
            _fold_affine_into(layer, m.reshape(-1), s.reshape(-1))
        elif isinstance(layer, nn.Linear) and len(input_shape) == 1:
            _fold_affine_into(layer, m, s)
        elif isinstance(layer, nn.Conv2d) and len(input_shape) == 3:
            if not _per_channel(m) or not _per_channel(s) or layer.groups != 1:
                continue
            mc, sc = m[:, 0, 0], s[:, 0, 0]
            pads = layer.padding != "valid" and any(p != 0 for p in _padding(layer))
            if pads and bool(mc.ne(0).any()):
                continue
            _fold_affine_into(layer, mc, sc)
        else:
            continue
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
        folded.append(str(node.target))
    return folded


def _per_channel(t: torch.Tensor) -> bool:
    """True when a (C, H, W) tensor is constant over H and W."""
    return bool(t.eq(t[:, :1, :1]).all())


def _padding(conv: nn.Conv2d) -> tuple[int, ...]:
    if conv.padding == "same":
        return tuple(k - 1 for k in conv.kernel_size)
    return tuple(conv.padding)


def _fold_affine_into(layer: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """``layer((x - mean) / std)`` -> ``layer'(x)``; mean/std per input feature/channel."""
    w = layer.weight.detach()
    shape = (1, -1, *[1] * (w.dim() - 2))
    w_new = w / std.reshape(shape)
    shift = (w_new * mean.reshape(shape)).flatten(1).sum(1)
    bias = layer.bias.detach() if layer.bias is not None else w.new_zeros(w.shape[0])
    layer.weight = nn.Parameter(w_new)
    layer.bias = nn.Parameter(bias - shift)


class _Tracer(fx.Tracer):
    """Keeps ``Normalize`` as one call_module node, so it can be found and folded."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Normalize) or super().is_leaf_module(m, qualname)


def rewrite(
    model: nn.Module, input_shape: tuple[int, ...], *, enabled: bool = True
) -> tuple[fx.GraphModule, dict]:
    """The exact rewrites (module docstring) on an fx trace of ``model`` (not modified);
    returns ``(graph_module, {"relu_maxpool_swapped": [...], "normalize_folded": [...]})``.
    ``enabled=False`` only traces (for measuring what the rewrites give)."""
    try:
        root = clone(model).eval()
        gm = fx.GraphModule(root, _Tracer().trace(root))
    except Exception as e:  # fx raises many types for untraceable code
        raise PrunekitError(f"deploy needs a torch.fx-traceable model: {e}") from None
    info = {
        "relu_maxpool_swapped": _swap_relu_maxpool(gm) if enabled else [],
        "normalize_folded": _fold_normalize(gm, input_shape) if enabled else [],
    }
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval(), info

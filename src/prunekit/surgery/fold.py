"""Fold BatchNorm into the convolution (or Linear) before it, for inference.

In eval mode ``BN(z) = gamma * (z - mu) / sqrt(var + eps) + beta`` is an affine map per
channel, so with ``s = gamma / sqrt(var + eps)`` the pair ``BN(W x + b)`` equals a
single layer with ``W' = s * W`` (row-wise) and ``b' = s * (b - mu) + beta``
(Ioffe & Szegedy 2015; Jacob et al. 2018, section 3.2). One pass over memory fewer
per folded pair; the BatchNorm becomes ``nn.Identity``.
"""

from __future__ import annotations

from torch import fx, nn

from ..pruning.masks import clone, finalize

_BN = nn.modules.batchnorm._BatchNorm
_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, child = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), child


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """An eval-mode copy of ``model`` with every foldable BatchNorm folded; returns
    ``(model, ["bn name", ...])``. A BN is folded when its input is the output of a
    Conv1d/Conv2d/Linear used nowhere else and both modules are called once."""
    model = finalize(clone(model)).eval()
    gm = fx.symbolic_trace(model)
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), _BN):
            continue
        prev = node.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1):
            continue
        layer, bn = model.get_submodule(prev.target), model.get_submodule(node.target)
        if not isinstance(layer, _FOLDABLE) or calls[prev.target] > 1 or calls[node.target] > 1:
            continue
        _fold(layer, bn)
        parent, child = _parent(model, node.target)
        setattr(parent, child, nn.Identity())
        folded.append(str(node.target))
    return model, folded


def _fold(layer: nn.Module, bn: nn.Module) -> None:
    w = layer.weight.detach()
    n = w.shape[0]
    gamma = bn.weight.detach() if bn.weight is not None else w.new_ones(n)
    beta = bn.bias.detach() if bn.bias is not None else w.new_zeros(n)
    scale = gamma / (bn.running_var + bn.eps).sqrt()
    bias = layer.bias.detach() if layer.bias is not None else w.new_zeros(n)
    layer.weight = nn.Parameter(w * scale.view(-1, *[1] * (w.dim() - 1)))
    layer.bias = nn.Parameter((bias - bn.running_mean) * scale + beta)

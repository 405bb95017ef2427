"""Give a freshly built model the shapes a saved (possibly shrunk) model had.

Loading a shrunk model starts from an unpruned instance of its class: every tensor whose
saved shape differs gets an empty tensor of that shape, and the layer's size attributes
follow, so its forward, ``repr`` and later surgery see the real sizes. Used by the zoo
run-directory loader (``saving.load``) and the user-model loader (``userio.load_into``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..pruning.masks import unit_dim


def resize(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Give every tensor whose saved shape differs an empty one of the saved shape, and
    update the layer's size attributes (Linear, conv, transformers ``Conv1D``, BatchNorm,
    GroupNorm, LayerNorm) so that its forward and ``repr`` follow."""
    for key, shape in shapes.items():
        mod_name, _, attr = key.rpartition(".")
        try:
            module = model.get_submodule(mod_name)
        except AttributeError:
            continue
        cur = getattr(module, attr, None)
        if not isinstance(cur, torch.Tensor) or list(cur.shape) == list(shape):
            continue
        new = torch.empty(shape, dtype=cur.dtype, device=cur.device)
        if isinstance(cur, nn.Parameter):
            setattr(module, attr, nn.Parameter(new, requires_grad=cur.requires_grad))
        else:
            module.register_buffer(attr, new)
        _set_sizes(module, attr, list(shape))
    _fix_attention(model)


def _fix_attention(model: nn.Module) -> None:
    """Head counts of Hugging Face attention layers whose projections were resized."""
    for m in model.modules():
        kind = type(m).__name__
        if kind == "GPT2Attention" and not getattr(m, "is_cross_attention", False):
            m.split_size = int(m.c_attn.weight.shape[1]) // 3
            m.num_heads = m.split_size // m.head_dim
        elif kind in ("BertSelfAttention", "RobertaSelfAttention"):
            m.all_head_size = int(m.query.weight.shape[0])
            m.num_attention_heads = m.all_head_size // m.attention_head_size


def _set_sizes(module: nn.Module, attr: str, shape: list[int]) -> None:
    if attr != "weight" and not (attr == "running_mean" and hasattr(module, "num_features")):
        return
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = shape
    elif isinstance(module, nn.modules.conv._ConvNd):
        module.out_channels = shape[0]
        module.in_channels = shape[1] * module.groups
    elif unit_dim(module) == 1:  # transformers' Conv1D: weight (in, out)
        module.nx, module.nf = shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = shape[0]
    elif isinstance(module, nn.GroupNorm):
        module.num_channels = shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = tuple(shape)

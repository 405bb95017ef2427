"""The 2-D view of a layer that the reconstruction maths works on.

Every layer is a matrix product ``Y = W X`` with ``W`` of shape ``(out, in)`` and one
column of ``X`` per input vector (a token, a pixel position). This module maps
Linear, Conv1d / Conv2d and transformers' ``Conv1D`` weights to and from that view,
and a layer's input tensor to the rows of ``Xᵀ`` (one input vector per row):

- ``nn.Linear``: ``W`` is the weight; inputs ``(..., in)`` become ``(N, in)``.
- transformers ``Conv1D`` (GPT-2): the weight is stored ``(in, out)`` and computes
  ``x @ weight``, so ``W = weightᵀ``.
- ``nn.Conv2d`` (``nn.Conv1d`` as height 1), ``groups=1``, zero padding: the
  convolution is ``W_2d @ unfold(x)``. Columns are ordered ``(kh, kw, in_channel)``
  (channels fastest), so that ``m`` consecutive columns are ``m`` input channels at
  one kernel position: the grouping of prunekit's ``nm`` granularity and NVIDIA's
  ASP. The inputs are ``F.unfold`` patches permuted the same way.

Only plain tensors and ``torch.nn`` are used (no prunekit model or pipeline), so the
maths can be reused for any model that is made of such layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import PrunekitError


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (a Linear with a transposed weight), found by shape
    rather than import so that transformers stays optional."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _conv_args(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """(kernel, dilation, padding, stride) as 2-D pairs; Conv1d is a height-1 Conv2d."""
    if module.groups != 1:
        raise PrunekitError(
            f"{type(module).__name__} with groups={module.groups}: reconstruction "
            "needs groups=1 (one weight matrix per layer)"
        )
    bad_string = isinstance(module.padding, str) and module.padding != "valid"
    if module.padding_mode != "zeros" or bad_string:
        raise PrunekitError(
            f"{type(module).__name__} with padding={module.padding!r}, "
            f"padding_mode={module.padding_mode!r}: only explicit zero padding is supported"
        )
    pad = (0,) * len(module.kernel_size) if isinstance(module.padding, str) else module.padding
    if isinstance(module, nn.Conv1d):
        one = lambda t: (1, t[0])  # noqa: E731
        return one(module.kernel_size), one(module.dilation), (0, pad[0]), one(module.stride)
    return module.kernel_size, module.dilation, tuple(pad), module.stride


def supports(module: nn.Module) -> bool:
    """Whether the 2-D view exists for this layer."""
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        return True
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        try:
            _conv_args(module)
        except PrunekitError:
            return False
        return True
    return False


def to_2d(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (shaped like ``module.weight``) as the ``(out, in)`` matrix ``W``."""
    if isinstance(module, nn.Linear):
        return weight
    if is_hf_conv1d(module):
        return weight.t()
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        _conv_args(module)
        w = weight if weight.dim() == 4 else weight.unsqueeze(2)  # (O, I, 1, k) for Conv1d
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
    raise PrunekitError(f"no 2-D weight view for {type(module).__name__}")


def from_2d(module: nn.Module, w2d: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_2d`: the ``(out, in)`` matrix back in the module's layout."""
    if isinstance(module, nn.Linear):
        return w2d
    if is_hf_conv1d(module):
        return w2d.t()
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        shape = (
            module.weight.shape if not hasattr(module, "weight_orig") else module.weight_orig.shape
        )
        o, i, *k = shape
        kh, kw = (1, k[0]) if len(k) == 1 else k
        w = w2d.reshape(o, kh, kw, i).permute(0, 3, 1, 2)
        return w.reshape(shape)
    raise PrunekitError(f"no 2-D weight view for {type(module).__name__}")


def weight_2d(module: nn.Module) -> torch.Tensor:
    """The module's current weight as ``W`` ``(out, in)`` (a view where possible)."""
    return to_2d(module, module.weight)


def inputs_2d(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input tensor as rows of ``Xᵀ``: ``(N, in)``, one input vector per row,
    so that ``inputs_2d(x) @ weight_2d(module).T`` (+ bias) is the layer's output."""
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        kernel, dilation, padding, stride = _conv_args(module)
        if isinstance(module, nn.Conv1d):
            x = x.unsqueeze(2) if x.dim() == 3 else x.view(1, x.shape[0], 1, -1)
        elif x.dim() == 3:
            x = x.unsqueeze(0)
        cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
        n, _, positions = cols.shape
        c = x.shape[1]
        # (N, C*kh*kw, L) -> (N, L, kh*kw, C): channels fastest, like to_2d's columns
        cols = cols.view(n, c, kernel[0] * kernel[1], positions).permute(0, 3, 2, 1)
        return cols.reshape(n * positions, -1)
    raise PrunekitError(f"no 2-D input view for {type(module).__name__}")

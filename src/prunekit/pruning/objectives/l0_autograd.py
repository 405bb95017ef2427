"""The fused autograd nodes of the L0 gates: one node per gated tensor instead of the
~10 composed ops of ``hard_concrete``, to save passes over memory (see the timings in
``_GatedWeight``). Their gradients are checked against the composed ops in tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .hard_concrete import _gate_, _gate_grad_


class _HardConcreteGate(torch.autograd.Function):
    """``hard_concrete`` given the logistic noise ``n = log u - log(1-u)``, fused to save
    memory passes: one output tensor computed in place, and only ``z`` saved (the
    gradient is rebuilt from ``z``, see :func:`_gate_grad_`)."""

    @staticmethod
    def forward(
        ctx: Any, log_alpha: Tensor, noise: Tensor, beta: float, gamma: float, zeta: float
    ) -> Tensor:
        z = _gate_(torch.add(noise, log_alpha), beta, gamma, zeta)
        ctx.save_for_backward(z)
        ctx.consts = (beta, gamma, zeta)
        return z

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (z,) = ctx.saved_tensors
        return _gate_grad_(grad.clone(), z, *ctx.consts), None, None, None, None


class _GatedWeight(torch.autograd.Function):
    """``W = weight_orig * mask * z`` with ``z`` the hard-concrete sample, as ONE autograd
    node. On CPU a gated step of LeNet-300-100 is memory-bound: one pass over fc1's 235k
    gates costs 25 us (in-place, scalar) to 100 us (two inputs, or a sigmoid), measured
    with one thread, next to ~2.2 ms for a whole dense step at batch 128. Fusing the
    gate, the mask and the product cuts the passes over the gates from ~19 (the composed
    ops' forward and backward) to ~13; the penalty and the gates' update add ~6 more.

    A masked-out entry has ``mask * z = 0``, which the backward treats as a clamped gate:
    no gradient to its logit, and ``dL/dweight_orig = g * mask * z = 0`` as for a mask."""

    @staticmethod
    def forward(
        ctx: Any,
        weight: Tensor,
        log_alpha: Tensor,
        noise: Tensor,
        mask: Tensor | None,
        beta: float,
        gamma: float,
        zeta: float,
    ) -> Tensor:
        zm = _gate_(torch.add(noise, log_alpha), beta, gamma, zeta)
        if mask is not None:
            zm.mul_(mask)
        ctx.save_for_backward(weight, zm)
        ctx.consts = (beta, gamma, zeta)
        return weight * zm

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        weight, zm = ctx.saved_tensors
        g_weight = grad * zm if ctx.needs_input_grad[0] else None
        g_alpha = None
        if ctx.needs_input_grad[1]:
            # dL/dz = grad * weight
            g_alpha = _gate_grad_(torch.mul(grad, weight), zm, *ctx.consts)
        return g_weight, g_alpha, None, None, None, None, None

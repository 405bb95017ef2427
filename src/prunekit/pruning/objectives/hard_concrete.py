"""The hard-concrete distribution (Louizos, Welling & Kingma 2018, "Learning Sparse
Neural Networks through L0 Regularization"): the maths behind the L0 gates.

A gate ``z_j`` with logit ``log_alpha_j``::

    u ~ U(0, 1)
    s     = sigmoid((log u - log(1 - u) + log_alpha) / beta)
    s_bar = s * (zeta - gamma) + gamma
    z     = min(1, max(0, s_bar))                         (hard-concrete sample)

    P(z_j != 0) = sigmoid(log_alpha_j - beta * log(-gamma / zeta))
    z_test = min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))   (eval mode)

with ``beta = 2/3, gamma = -0.1, zeta = 1.1``. The stretch past [0, 1] gives z exact
point masses at 0 and at 1 while the gradient still reaches ``log_alpha`` through the
samples in (0, 1) and through the closed-form penalty. The in-place kernels
``_gate_`` / ``_gate_grad_`` serve the fused autograd nodes (``l0_autograd.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def hard_concrete(
    log_alpha: Tensor, u: Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA
) -> Tensor:
    """Hard-concrete sample ``z = min(1, max(0, s(zeta-gamma)+gamma))`` for uniforms ``u``."""
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return torch.clamp(s * (zeta - gamma) + gamma, 0.0, 1.0)


def keep_probability(
    log_alpha: Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA
) -> Tensor:
    """``P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))`` (closed form)."""
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


def deterministic_gate(log_alpha: Tensor, gamma: float = GAMMA, zeta: float = ZETA) -> Tensor:
    """Deterministic test-time gate ``min(1, max(0, sigmoid(log_alpha)(zeta-gamma)+gamma))``."""
    return torch.clamp(torch.sigmoid(log_alpha) * (zeta - gamma) + gamma, 0.0, 1.0)


def closed_logit(gamma: float = GAMMA, zeta: float = ZETA) -> float:
    """The largest ``log_alpha`` whose test-time gate is exactly 0: ``logit(-gamma/(zeta-gamma))``."""
    p = -gamma / (zeta - gamma)
    return math.log(p / (1.0 - p))


def _gate_(t: Tensor, beta: float, gamma: float, zeta: float) -> Tensor:
    """In place: ``t = noise + log_alpha`` -> ``z = clamp(sigmoid(t / beta)(zeta-gamma)+gamma, 0, 1)``."""
    return t.mul_(1.0 / beta).sigmoid_().mul_(zeta - gamma).add_(gamma).clamp_(0.0, 1.0)


def _gate_grad_(grad: Tensor, z: Tensor, beta: float, gamma: float, zeta: float) -> Tensor:
    """In place on ``grad`` (= dL/dz): ``dL/dlog_alpha``. Inside (0, 1),
    ``s = (z - gamma) / (zeta - gamma)``, so ``dz/dlog_alpha = (zeta-gamma)/beta * s(1-s)
    = y (1 - y / (zeta - gamma)) / beta`` with ``y = z - gamma``; 0 where z is clamped."""
    torch.ops.aten.hardtanh_backward.grad_input(grad, z, 0.0, 1.0, grad_input=grad)
    y = torch.sub(z, gamma)  # not in place: z stays valid for a retained graph's next backward
    y.addcmul_(y, y, value=-1.0 / (zeta - gamma))
    return grad.mul_(y).mul_(1.0 / beta)

"""The L0 gates on a model: one hard-concrete gate per weight or per output unit,
attached by forward hooks, sampled from a pooled logistic noise, folded into the
weights at the end. ``L0Objective`` (``l0.py``) steers them; this file owns them.

Attachment: weight gates multiply the effective weight in a forward pre-hook that
takes the place of the mask hook (``weight = weight_orig * weight_mask * z``, one
fused node); to keep that order every gated module gets an all-ones mask at attach (a
ones mask changes nothing). Unit gates multiply the module's output channel-wise in a
forward hook, which equals scaling the unit's weight row *and* bias by ``z_j`` and
costs one product per activation instead of per weight. All gates of a layer are
sampled with one tensor op, once per training batch (shared by the batch, as in the
paper). In eval mode the deterministic ``z_test`` is used.

Folding: ``detach`` multiplies ``weight_orig`` (and, for unit gates, ``bias_orig``) by
``z_test`` and removes every hook and gate, leaving a plain masked model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from ...registry import PrunekitError
from ..masks import apply_mask, is_masked, n_units, original, out_in, refresh
from .hard_concrete import deterministic_gate, keep_probability
from .l0_autograd import _GatedWeight, _HardConcreteGate


class NoisePool:
    """Logistic noise ``log u - log(1 - u)`` for ``n`` gates per layer and step, served as a
    contiguous slice at a fresh random offset of a pool of ``2 n`` values that is redrawn
    every ``refresh`` steps. Each gate's noise is exactly logistic and the values of one
    step are distinct pool entries (independent); only across steps is a value reused at a
    shifted position. Drawing 266k uniforms per step with torch's CPU generator costs more
    than LeNet-300-100's whole forward pass, and the pool removes that cost. ``refresh``
    counts calls (one per gated layer and training forward)."""

    def __init__(self, n: int, generator: torch.Generator, refresh: int = 256) -> None:
        self.n, self.generator, self.refresh = n, generator, refresh
        self.calls = 0
        self.pool = torch.empty(0)

    def take(self, numel: int) -> Tensor:
        if self.calls % self.refresh == 0 or self.pool.numel() < 2 * numel:
            u = torch.rand(max(2 * self.n, 2 * numel), generator=self.generator)
            self.pool = u.clamp_(1e-6, 1.0 - 1e-6).logit_()
        self.calls += 1
        offset = int(torch.randint(self.pool.numel() - numel + 1, (1,), generator=self.generator))
        return self.pool[offset : offset + numel]


class HardConcreteGates:
    """Gate state and hooks of an L0 objective (a mixin: ``L0Objective`` sets the
    attributes in its ``__init__`` and adds the controller)."""

    unit_gates: bool
    log_alpha: dict[str, Tensor]
    modules: dict[str, nn.Module]

    def gate_shape(self, module: nn.Module) -> torch.Size:
        w = original(module)
        return w.shape if not self.unit_gates else torch.Size([n_units(module)])

    def noise(self, la: Tensor) -> Tensor:
        """Logistic noise ``log u - log(1 - u)`` shaped like ``la`` (fresh, or from the pool)."""
        if self.pool is None:  # fresh uniforms every step
            u = torch.rand(la.shape, generator=self.generator).clamp_(1e-6, 1.0 - 1e-6)
            return u.logit_()
        return self.pool.take(la.numel()).view(la.shape)

    def sample(self, name: str) -> Tensor:
        """One hard-concrete sample of every gate of layer ``name`` (one tensor op)."""
        la = self.log_alpha[name]
        return _HardConcreteGate.apply(la, self.noise(la), self.beta, self.gamma, self.zeta)

    def gate(self, name: str, training: bool) -> Tensor:
        if training and torch.is_grad_enabled():
            return self.sample(name)
        return deterministic_gate(self.log_alpha[name].detach(), self.gamma, self.zeta)

    def keep_probabilities(self) -> dict[str, Tensor]:
        """``P(z != 0)`` per gate, detached."""
        return {
            n: keep_probability(la.detach(), self.beta, self.gamma, self.zeta)
            for n, la in self.log_alpha.items()
        }

    def test_gates(self) -> dict[str, Tensor]:
        return {
            n: deterministic_gate(la.detach(), self.gamma, self.zeta)
            for n, la in self.log_alpha.items()
        }

    def synced_tensors(self) -> list[Tensor]:
        """The gate logits: not model parameters, so data-parallel training (torchrun)
        averages their gradients across ranks itself (``prunekit.distributed``)."""
        return list(self.log_alpha.values())

    # -- objective hooks --------------------------------------------------------------------
    def attach(self, model: nn.Module, modules: dict[str, nn.Module]) -> None:
        if self._pending:
            raise PrunekitError(
                "l0: no target sparsity; pass target_sparsity (a fraction, or "
                "None for a fixed lambda) or run it through the pruning phase"
            )
        self.modules = dict(modules)
        init = math.log(1.0 - self.init_drop) - math.log(self.init_drop)
        for name, m in self.modules.items():
            w = original(m)
            self.log_alpha[name] = torch.full(
                self.gate_shape(m), init, dtype=w.dtype, device=w.device, requires_grad=True
            )
            if not self.unit_gates:
                if not is_masked(m):  # so the mask hook runs before the gate hook
                    apply_mask(m, torch.ones_like(w))
                mask = m.weight_mask
                if bool((mask == 1).all()):  # remember the version of an all-ones mask
                    self._ones_version[name] = mask._version
                self._park_mask_hook(name, m)
                self._hooks.append(m.register_forward_pre_hook(self._weight_hook(name)))
            else:
                self._hooks.append(m.register_forward_hook(self._unit_hook(name)))
        largest = max(la.numel() for la in self.log_alpha.values())
        self.pool = NoisePool(largest, self.generator) if self.noise_pool else None

    def _park_mask_hook(self, name: str, m: nn.Module) -> None:
        """Take the mask's pre-hook out while gated (the gate hook applies the mask
        itself); ``detach`` puts it back first in line."""
        for hid, h in list(m._forward_pre_hooks.items()):
            if isinstance(h, prune.BasePruningMethod) and h._tensor_name == "weight":
                self._parked[name] = (hid, m._forward_pre_hooks.pop(hid))

    def _weight_hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any) -> None:
            # weight = weight_orig * weight_mask * z; while the mask is the untouched
            # all-ones one (an in-place change bumps its version) its product is skipped.
            ones = module.weight_mask._version == self._ones_version.get(name)
            mask = None if ones else module.weight_mask
            if module.training and torch.is_grad_enabled():
                la = self.log_alpha[name]
                module.weight = _GatedWeight.apply(
                    module.weight_orig,
                    la,
                    self.noise(la),
                    mask,
                    self.beta,
                    self.gamma,
                    self.zeta,
                )
            else:
                z = self.gate(name, False)
                w = module.weight_orig * z
                module.weight = w if mask is None else w * mask

        return hook

    def _unit_hook(self, name: str) -> Any:
        conv = isinstance(self.modules[name], nn.modules.conv._ConvNd)

        def hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
            z = self.gate(name, module.training)
            if conv:  # (N, C, *spatial)
                return output * z.view(1, -1, *([1] * (output.dim() - 2)))
            return output * z  # Linear / Conv1D: units on the last dim, (N, *, out)

        return hook

    @torch.no_grad()
    def detach(self, model: nn.Module) -> None:
        """Fold ``z_test`` into the weights and remove every hook and gate."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for name, (hid, h) in self._parked.items():
            hooks = self.modules[name]._forward_pre_hooks
            hooks[hid] = h
            hooks.move_to_end(hid, last=False)
        self._parked = {}
        for name, z in self.test_gates().items():
            m = self.modules[name]
            if not self.unit_gates:
                original(m).mul_(z)
            else:
                w = out_in(m, original(m))  # a view: Conv1D's units are its columns
                w.mul_(z.view(-1, *([1] * (w.dim() - 1))))
                if getattr(m, "bias", None) is not None or is_masked(m, "bias"):
                    original(m, "bias").mul_(z)
            for pname in ("weight", "bias"):
                refresh(m, pname)
        probs = [p.flatten() for p in self.keep_probabilities().values()]
        probs = torch.cat(probs) if probs else torch.zeros(0)
        self.final = {
            "lambda": self.coef,
            "density_expected": self.density,
            "open_fraction_test": self._open_fraction(),
            # For the report's picture of the gates: P(z != 0) in 20 bins over [0, 1].
            "keep_prob_hist": {
                "edges": [i / 20 for i in range(21)],
                "counts": [int(c) for c in torch.histc(probs.double(), 20, 0.0, 1.0)],
            },
        }
        self.log_alpha = {}
        self._moments = {}

    def param_groups(self) -> list[dict[str, Any]]:
        """The gate logits, for the training loop's optimizer: lr ``gate_lr``, no weight
        decay, no momentum (SGD's, RMSprop's: the gradient handed over is already a
        running average, see ``_normalize_grads``; Adam ignores the key)."""
        params = list(self.log_alpha.values())
        group = {"params": params, "lr": self.gate_lr, "weight_decay": 0.0, "momentum": 0.0}
        return [group] if params else []

    def _normalize_grads(self) -> None:
        """``grad <- m_hat / (sqrt(v_hat) + eps)``: Adam's direction (Kingma & Ba 2015:
        m, v running means of g and g^2, bias-corrected; betas 0.9, 0.999, eps 1e-8), so
        an optimizer stepping it with lr ``gate_lr`` (SGD without momentum) moves a logit
        exactly as Adam would, about ``gate_lr`` per step whatever the gradient scale."""
        b1, b2, eps = 0.9, 0.999, 1e-8
        self._moment_steps += 1
        bc1, bc2 = 1.0 - b1**self._moment_steps, 1.0 - b2**self._moment_steps
        for n, la in self.log_alpha.items():
            if n not in self._moments:
                self._moments[n] = (torch.zeros_like(la), torch.zeros_like(la))
        ms = [self._moments[n][0] for n in self.log_alpha]
        vs = [self._moments[n][1] for n in self.log_alpha]
        gs = [la.grad for la in self.log_alpha.values()]
        # one multi-tensor kernel per op over all layers (as torch's foreach Adam)
        torch._foreach_lerp_(ms, gs, 1.0 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1.0 - b2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, eps)
        torch._foreach_mul_(denom, bc1)
        for g, m, d in zip(gs, ms, denom, strict=True):
            torch.div(m, d, out=g)

    def _open_fraction(self) -> float:
        zs = self.test_gates()
        return float(sum(int((z > 0).sum()) for z in zs.values()) / max(self.num_gates, 1))

    @property
    def num_gates(self) -> int:
        return sum(la.numel() for la in self.log_alpha.values())

"""Physical removal of dead units: ``shrink(model, example_input) -> (smaller model, info)``.

A unit ``c`` of a group (see :mod:`prunekit.pruning.dependency`) is *dead* when the group's tensor is
exactly zero in channel ``c`` everywhere, for every input:

- every producer has ``weight[c] == 0`` and ``bias[c] == 0`` (its output is 0), and
- every BatchNorm follower maps 0 to 0 in eval mode:
  ``beta_c - gamma_c * mu_c / sqrt(var_c + eps) == 0`` (the neuron granularity masks
  gamma and beta with the filter, so this holds), and every depthwise follower has
  ``bias[c] == 0``.

A dead unit contributes exactly nothing to any consumer (activations in the
pass-through table map 0 to 0, pooling of zeros is 0, a residual sum adds 0), so
dropping row ``c`` of the producers, entry ``c`` of the followers and the inputs of
``c`` from every consumer (``fan`` consecutive inputs after a flatten) leaves every
output unchanged up to float summation order.

``round_to=k`` keeps ``ceil(alive / k) * k`` units per group (SIMD-friendly widths):
dead units are kept first, then new all-zero units are appended, which are dead
by construction (BN: gamma = beta = mean = 0, var = 1), so outputs are unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..evaluation.cost import eval_mode
from ..pruning.dependency import UnitGroup, analyze
from ..pruning.masks import clone, finalize, is_prunable, out_in, unit_dim
from ..registry import PrunekitError

_BN = nn.modules.batchnorm._BatchNorm
_CONV = nn.modules.conv._ConvNd


def _zero_response(m: nn.Module) -> torch.Tensor:
    """Per-unit eval-mode output of a follower for a zero input."""
    if isinstance(m, _BN):
        n = m.num_features
        gamma = m.weight.detach() if m.weight is not None else torch.ones(n)
        beta = m.bias.detach() if m.bias is not None else torch.zeros(n)
        if m.running_mean is None:  # batch statistics of an all-zero channel: mean 0
            return beta
        return beta - gamma * m.running_mean / torch.sqrt(m.running_var + m.eps)
    bias = getattr(m, "bias", None)  # depthwise conv
    return bias.detach() if bias is not None else torch.zeros(m.out_channels)


def alive_units(model: nn.Module, group: UnitGroup) -> torch.Tensor:
    """Boolean ``(group.size,)``: True where unit ``c`` may be nonzero somewhere."""
    alive = torch.zeros(group.size, dtype=torch.bool)
    for name in group.producers:
        m = model.get_submodule(name)
        alive |= out_in(m, m.weight.detach()).reshape(group.size, -1).ne(0).any(dim=1)
        if m.bias is not None:
            alive |= m.bias.detach().ne(0)
    for name in group.followers:
        alive |= _zero_response(model.get_submodule(name)).ne(0)
    return alive


def keep_plan(alive: torch.Tensor, round_to: int = 1) -> torch.Tensor:
    """Indices of the units to keep, in order; ``-1`` = a new all-zero unit.

    Alive units first (in their original order), then, to reach a multiple of
    ``round_to``, dead units (lowest index first), then new zero units.
    """
    if round_to < 1:
        raise PrunekitError(f"round_to must be >= 1, got {round_to}")
    idx = torch.nonzero(alive).flatten()
    target = math.ceil(idx.numel() / round_to) * round_to
    dead = torch.nonzero(~alive).flatten()[: max(target - idx.numel(), 0)]
    idx = torch.cat([idx, dead]).sort().values
    pad = torch.full((target - idx.numel(),), -1, dtype=torch.long)
    return torch.cat([idx, pad])


def _take(t: torch.Tensor | None, dim: int, idx: torch.Tensor, fill: float = 0.0):
    """``t`` indexed by ``idx`` along ``dim``; ``-1`` entries become ``fill``."""
    if t is None:
        return None
    out = t.detach().index_select(dim, idx.clamp(min=0)).clone()
    new = torch.nonzero(idx < 0).flatten()
    if new.numel():
        out.index_fill_(dim, new, fill)
    if isinstance(t, nn.Parameter):
        return nn.Parameter(out, requires_grad=t.requires_grad)
    return out


def _fan_index(idx: torch.Tensor, fan: int) -> torch.Tensor:
    """Unit indices -> input indices when each unit feeds ``fan`` consecutive inputs."""
    span = torch.arange(fan)
    full = (idx.clamp(min=0)[:, None] * fan + span).flatten()
    return torch.where(idx.repeat_interleave(fan) < 0, -1, full)


def _set(m: nn.Module, name: str, value: torch.Tensor | None) -> None:
    if value is None:
        return
    if isinstance(value, nn.Parameter):
        setattr(m, name, value)
    else:
        m.register_buffer(name, value)


@torch.no_grad()
def apply_plan(model: nn.Module, group: UnitGroup, idx: torch.Tensor) -> None:
    """Slice every member of ``group`` to the units ``idx`` (in place)."""
    k = idx.numel()
    for name in group.producers:
        m = model.get_submodule(name)
        _set(m, "weight", _take(m.weight, unit_dim(m), idx))
        _set(m, "bias", _take(m.bias, 0, idx))
        if isinstance(m, nn.Linear):
            m.out_features = k
        elif unit_dim(m) == 1:  # transformers' Conv1D
            m.nf = k
        else:
            m.out_channels = k
    for name in group.followers:
        m = model.get_submodule(name)
        _set(m, "weight", _take(m.weight, 0, idx))
        _set(m, "bias", _take(m.bias, 0, idx))
        if isinstance(m, _BN):
            _set(m, "running_mean", _take(m.running_mean, 0, idx, 0.0))
            _set(m, "running_var", _take(m.running_var, 0, idx, 1.0))
            m.num_features = k
        else:  # depthwise conv
            m.in_channels = m.out_channels = m.groups = k
    for name, fan in group.consumers:
        m = model.get_submodule(name)
        _set(m, "weight", _take(m.weight, 1 - unit_dim(m), _fan_index(idx, fan)))
        if isinstance(m, nn.Linear):
            m.in_features = k * fan
        elif unit_dim(m) == 0:
            m.in_channels = k


def units(model: nn.Module) -> dict[str, int]:
    """Output units of every Linear/Conv/``Conv1D`` layer: ``{"conv1": 16, ...}``."""
    return {
        n: int(out_in(m, m.weight).shape[0])
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear | _CONV) or is_prunable(m)
    }


def shrink(
    model: nn.Module,
    example_input: torch.Tensor | None = None,
    *,
    round_to: int = 1,
    check: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """A physically smaller copy of ``model`` without its dead units (``model`` is
    not changed; masks are baked into the copy).

    Returns ``(small, info)`` with ``info = {"units": {layer: units}, "units_original":
    {...}, "groups": [{"layers": [...], "units": k, "units_original": n}, ...]}``.
    With ``example_input`` and ``check``, both models are run on it in eval mode and a
    difference above ``1e-4 * max(1, max|y|)`` raises :class:`PrunekitError`.
    Raises when a group would lose every unit (at least one must stay) and
    :class:`~prunekit.pruning.dependency.UnsupportedModel` for layers it cannot follow.
    """
    small = finalize(clone(model))
    report = []
    for group in analyze(small):
        if group.fixed is not None:
            continue
        alive = alive_units(small, group)
        if not alive.any():
            raise PrunekitError(
                f"every unit of {group.name!r} is zero; at least one must stay "
                "(the model would output a constant)"
            )
        idx = keep_plan(alive, round_to)
        if not torch.equal(idx, torch.arange(group.size)):
            apply_plan(small, group, idx)
        report.append(
            {"layers": group.producers, "units": int(idx.numel()), "units_original": group.size}
        )
    info = {"units": units(small), "units_original": units(model), "groups": report}
    if example_input is not None and check:
        _check_same(model, small, example_input)
    return small, info


@torch.no_grad()
def _check_same(model: nn.Module, small: nn.Module, x: torch.Tensor) -> None:
    with eval_mode(model, small):
        ref, out = model(x), small(x)
    diff = float((ref - out).abs().max())
    tol = 1e-4 * max(1.0, float(ref.abs().max()))
    if diff > tol:
        raise PrunekitError(
            f"removing units changed the outputs by {diff:.3g} (> {tol:.3g}); the model "
            "uses an operation the surgery does not model"
        )


def shrink_for_result(
    model: nn.Module, input_shape: tuple[int, ...]
) -> tuple[nn.Module, dict[str, Any]]:
    """``shrink`` for the pipeline: the smaller model and its result.json fields.

    ``achieved_sparsity`` is measured on the masked model, i.e. relative to the
    original architecture, so it stays comparable with runs that do not shrink; the
    other cost figures of the result describe the smaller model, and
    ``params_total_original`` / ``macs_dense_original`` the original one.
    """
    from ..evaluation.cost import achieved_sparsity, macs, param_counts

    x = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0))
    small, info = shrink(model, x)
    return small, {
        "shrunk": True,
        "achieved_sparsity": achieved_sparsity(model),
        "architecture": info["units"],
        "architecture_original": info["units_original"],
        "params_total_original": param_counts(model)[0],
        "macs_dense_original": macs(model, input_shape)[0],
    }

"""Masks in the ``torch.nn.utils.prune`` convention.

A masked parameter ``weight`` becomes the Parameter ``weight_orig`` plus the buffer
``weight_mask``; a forward pre-hook recomputes ``weight = weight_orig * weight_mask``.
Users of PyTorch already know this layout, and ``prune.remove`` works on our models.
Because the effective weight is a product with the mask, its gradient w.r.t. the
pruned entries is exactly zero and weight decay/momentum acting on ``weight_orig``
never make a pruned *effective* weight nonzero.

Masks only ever lose entries: re-pruning multiplies the new mask into the old one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from ..registry import PrunekitError

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


def check_exclude(model: nn.Module, exclude: Iterable[str]) -> set[str]:
    """``exclude`` as a set, every name a prunable layer of ``model``: a typo would
    otherwise silently prune the layer it meant to keep."""
    excluded = {exclude} if isinstance(exclude, str) else set(exclude)
    layers = [name for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    unknown = sorted(excluded - set(layers))
    if unknown:
        raise PrunekitError(
            f"exclude: no prunable layer named {', '.join(map(repr, unknown))}; "
            f"prunable layers: {', '.join(layers) or 'none'}"
        )
    return excluded


def prunable_modules(
    model: nn.Module, *, exclude: Iterable[str] = (), include_last: bool = True
) -> dict[str, nn.Module]:
    """Linear/Conv modules (by qualified name) whose ``weight`` may be pruned.

    ``include_last=False`` drops the last one in registration order (the classifier
    head) — removing output units of the head would remove classes.
    """
    excluded = check_exclude(model, exclude)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}
    found: dict[str, nn.Module] = {}
    owners: set[int] = set()
    for name, m in layers.items():
        # Tied weights: one tensor, one entry (its first module); the others share its
        # mask (see sync_tied), so the tensor is scored and counted once.
        key = id(original(m))
        if name not in excluded and key not in owners:
            found[name] = m
        owners.add(key)
    _refuse_tied_elsewhere(model, found)
    if not include_last and found:
        found.pop(list(found)[-1])
    if not found:
        raise PrunekitError(
            f"{type(model).__name__} has no prunable layers (Linear/Conv1d/Conv2d)"
            + (f" after excluding {sorted(excluded)}" if excluded else "")
        )
    return found


def _refuse_tied_elsewhere(model: nn.Module, found: dict[str, nn.Module]) -> None:
    """A prunable weight also held by a module prunekit does not mask (a tied
    embedding / output pair): that module would compute with the unmasked tensor
    during training, then get the mask baked into it by ``finalize``. Refused."""
    ours = {id(original(m)): name for name, m in found.items()}
    for mod_name, m in model.named_modules():
        if isinstance(m, PRUNABLE_TYPES):
            continue
        for p_name, p in m.named_parameters(recurse=False):
            if id(p) in ours:
                raise PrunekitError(
                    f"layer {ours[id(p)]!r} shares its weight with {mod_name}.{p_name} "
                    f"({type(m).__name__}), which prunekit cannot mask; exclude "
                    f"{ours[id(p)]!r} or untie the weights"
                )


def tied_groups(model: nn.Module, name: str = "weight") -> list[list[tuple[str, nn.Module]]]:
    """Modules that share one ``name`` tensor (tied weights), two or more per group."""
    groups: dict[int, list[tuple[str, nn.Module]]] = {}
    for mod_name, m in model.named_modules():
        t = original(m, name) if isinstance(m, PRUNABLE_TYPES) else None
        if isinstance(t, torch.Tensor):
            groups.setdefault(id(t), []).append((mod_name, m))
    return [g for g in groups.values() if len(g) > 1]


@torch.no_grad()
def sync_tied(model: nn.Module, name: str = "weight") -> None:
    """Give every module of a tied tensor the SAME mask tensor (the first masked
    module's): one mask per shared tensor, so later pruning events update all at once
    and ``finalize`` multiplies one mask in, however many modules share it."""
    for group in tied_groups(model, name):
        masked = [(n, m) for n, m in group if is_masked(m, name)]
        if not masked:
            continue
        owner_name, owner = masked[0]
        mask = getattr(owner, f"{name}_mask")
        for n, m in group:
            if m is owner:
                continue
            theirs = get_mask(m, name)
            if theirs is mask:
                continue
            if theirs is not None and not torch.equal(theirs, mask):
                raise PrunekitError(
                    f"layers {owner_name!r} and {n!r} share one {name} tensor but carry "
                    "different masks; prune tied weights through one of them"
                )
            if theirs is None:
                prune.custom_from_mask(m, name, mask)
            m._buffers[f"{name}_mask"] = mask
            refresh(m, name)


def is_masked(module: nn.Module, name: str = "weight") -> bool:
    return hasattr(module, f"{name}_mask")


def get_mask(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    return getattr(module, f"{name}_mask", None)


def effective(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The weight the module computes with (mask applied), never stale."""
    if is_masked(module, name):
        return getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")
    return getattr(module, name)


def original(module: nn.Module, name: str = "weight") -> nn.Parameter:
    """The trainable tensor (``weight_orig`` when masked)."""
    return getattr(module, f"{name}_orig") if is_masked(module, name) else getattr(module, name)


@torch.no_grad()
def apply_mask(module: nn.Module, mask: torch.Tensor, name: str = "weight") -> None:
    """Intersect ``module.<name>``'s mask with ``mask`` (1 = keep, 0 = prune)."""
    param = original(module, name)
    if mask.shape != param.shape:
        raise PrunekitError(
            f"mask shape {tuple(mask.shape)} does not match {name} shape {tuple(param.shape)}"
        )
    mask = mask.to(device=param.device, dtype=param.dtype)
    if is_masked(module, name):
        getattr(module, f"{name}_mask").mul_(mask)
    else:
        prune.custom_from_mask(module, name, mask)
    refresh(module, name)


@torch.no_grad()
def refresh(module: nn.Module, name: str = "weight") -> None:
    """Recompute the plain attribute from orig*mask (the hook does it at forward)."""
    if is_masked(module, name):
        setattr(module, name, effective(module, name).detach())


@torch.no_grad()
def finalize(model: nn.Module) -> nn.Module:
    """Bake every mask into a plain Parameter (zeros stay zeros) and drop the hooks.

    Returns the same model, now loadable with strict ``load_state_dict`` into an
    unpruned instance of its architecture.
    """
    sync_tied(model)  # tied weights: one mask in, not one per module
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def masked_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"fc1.weight": mask, ...}`` for every masked tensor in the model."""
    out = {}
    for mod_name, module in model.named_modules():
        for buf_name, buf in module.named_buffers(recurse=False):
            if buf_name.endswith("_mask"):
                key = f"{mod_name}.{buf_name[: -len('_mask')]}" if mod_name else buf_name[:-5]
                out[key] = buf
    return out


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero effective weights over all prunable layers' weights.

    Biases, BatchNorm and normalization buffers are not counted.
    """
    total = zeros = 0
    for m in model.modules():
        if isinstance(m, PRUNABLE_TYPES):
            w = effective(m)
            total += w.numel()
            zeros += int((w == 0).sum())
    if total == 0:
        raise PrunekitError(f"{type(model).__name__} has no prunable layers")
    return zeros / total


def clone(model: nn.Module) -> nn.Module:
    """Deep copy that also works for masked models.

    ``copy.deepcopy`` fails on a model holding prune hooks because the recomputed
    ``weight`` is a non-leaf tensor; refreshing it under ``no_grad`` makes it a leaf.
    """
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                refresh(m, hook._tensor_name)
    return copy.deepcopy(model)

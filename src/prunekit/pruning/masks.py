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
import sys
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import prune

from ..registry import PrunekitError

#: torch's prunable layer types; see :func:`prunable_types` for the full set.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


def transposed_types() -> tuple[type[nn.Module], ...]:
    """transformers' ``Conv1D`` (GPT-2's linear layers: ``x @ W + b`` with ``W`` of
    shape ``(in, out)``, a Linear stored transposed), when transformers is loaded.

    Looked up in ``sys.modules`` rather than imported: transformers stays optional and
    its import (seconds) is not paid by users without it; a model holding a ``Conv1D``
    can only exist once transformers' module defining it has been imported.
    """
    mod = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(mod, "Conv1D", None)
    return (conv1d,) if isinstance(conv1d, type) else ()


def prunable_types() -> tuple[type[nn.Module], ...]:
    """Linear, Conv1d, Conv2d and (when loaded) transformers' ``Conv1D``."""
    return PRUNABLE_TYPES + transposed_types()


def is_prunable(module: nn.Module) -> bool:
    return isinstance(module, prunable_types())


def unit_dim(module: nn.Module) -> int:
    """The dim of ``module.weight`` that indexes output units: 1 for ``Conv1D``
    (``(in, out)``), 0 for Linear/Conv (``(out, in, *k)``)."""
    types = transposed_types()
    return 1 if types and isinstance(module, types) else 0


def out_in(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A weight-shaped tensor of ``module`` as an ``(out, in, *k)`` view (``Conv1D``:
    transposed; others: unchanged). Writes through the view reach ``t``."""
    return t.t() if unit_dim(module) == 1 else t


def from_out_in(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`out_in`: an ``(out, in, *k)`` tensor in ``module``'s layout."""
    return t.t() if unit_dim(module) == 1 else t


def n_units(module: nn.Module) -> int:
    """Output units (Linear rows, conv filters, ``Conv1D`` columns) of a prunable layer."""
    return int(original(module).shape[unit_dim(module)])


def _held_elsewhere(model: nn.Module) -> set[int]:
    """ids of parameters also held by a module that is not a prunable layer (a language
    model's output layer tied to its token embedding). Such a layer is left dense: masking
    it would leave the embedding computing with the unmasked tensor during training, then
    ``finalize`` would bake the mask into the embedding too."""
    held: set[int] = set()
    for module in model.modules():
        if not is_prunable(module):
            held.update(id(p) for p in module._parameters.values() if p is not None)
    return held


def check_exclude(model: nn.Module, exclude: Iterable[str]) -> set[str]:
    """``exclude`` as a set, every name a prunable layer of ``model``: a typo would
    otherwise silently prune the layer it meant to keep."""
    excluded = {exclude} if isinstance(exclude, str) else set(exclude)
    layers = [name for name, m in model.named_modules() if is_prunable(m)]
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
    """Linear/Conv/``Conv1D`` modules (by qualified name) whose ``weight`` may be pruned.

    A layer whose weight is also held by a module that is not a prunable layer (a
    language model's output layer sharing the token embedding) is left out, dense.
    Prunable layers sharing one tensor get one entry and, once pruned, one mask object
    (:func:`sync_tied`). Embeddings are never prunable layers.
    ``include_last=False`` drops the model's last one in registration order (the
    classifier head) — removing output units of the head would remove classes.
    """
    excluded = check_exclude(model, exclude)
    held = _held_elsewhere(model)
    candidates = [(name, m) for name, m in model.named_modules() if is_prunable(m)]
    found: dict[str, nn.Module] = {}
    owners: set[int] = set()
    for name, m in candidates:
        # Tied weights between prunable layers: one tensor, one entry (its first module);
        # the others share its mask (see sync_tied), so it is scored and counted once.
        key = id(original(m))
        if name not in excluded and key not in owners and key not in held:
            found[name] = m
        owners.add(key)
    if not include_last and candidates:  # the head: the model's last such layer, even if
        found.pop(candidates[-1][0], None)  # excluded or tied (a language model's lm_head)
    if not found:
        raise PrunekitError(
            f"{type(model).__name__} has no prunable layers (Linear/Conv1d/Conv2d)"
            + (f" after excluding {sorted(excluded)}" if excluded else "")
        )
    return found


def tied_groups(model: nn.Module, name: str = "weight") -> list[list[tuple[str, nn.Module]]]:
    """Modules that share one ``name`` tensor (tied weights), two or more per group."""
    groups: dict[int, list[tuple[str, nn.Module]]] = {}
    for mod_name, m in model.named_modules():
        t = original(m, name) if is_prunable(m) else None
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

    Biases, BatchNorm and normalization buffers are not counted, a tensor shared by
    several layers counts once, and a layer whose weight is also held by a module that
    is not prunable (a language model's output layer = its embedding) is not counted.
    """
    total = zeros = 0
    held = _held_elsewhere(model)
    seen: set[int] = set()
    for m in model.modules():
        key = id(original(m)) if is_prunable(m) else None
        if key is not None and key not in held and key not in seen:
            seen.add(key)
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


@torch.no_grad()
def broadcast_masks(model: nn.Module, src: int = 0) -> int:
    """Overwrite every rank's masks with rank ``src``'s; returns the number of masks
    (under torchrun after each pruning event; a no-op without a process group)."""
    masks = masked_parameters(model)
    if not dist.is_initialized() or dist.get_world_size() <= 1:
        return len(masks)
    for mask in masks.values():
        dist.broadcast(mask, src)
    for module in model.modules():  # the plain attribute = orig * mask
        for buf_name, _ in module.named_buffers(recurse=False):
            if buf_name.endswith("_mask"):
                refresh(module, buf_name[: -len("_mask")])
    return len(masks)

"""One pruning step: criterion -> scores -> granularity -> masks applied to the model.

This is the only place where masks are decided; schedules call it repeatedly with
growing targets, and the library's ``prunekit.prune`` calls it once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import default as run_default
from ..registry import PrunekitError
from .criteria import CRITERIA, Context, Criterion
from .dependency import UnsupportedModel, analyze
from .granularity import get
from .masks import (
    apply_mask,
    check_exclude,
    get_mask,
    original,
    out_in,
    prunable_modules,
    sync_tied,
)


def unit_groups(model: nn.Module) -> list[Any] | None:
    """The dependency groups (:func:`prunekit.pruning.dependency.analyze`), or None
    with a warning when the model has layers the surgery cannot follow: units are
    then chosen layer by layer (no ties, no BatchNorm) and ``shrink`` will refuse it."""
    try:
        return analyze(model)
    except UnsupportedModel as e:
        warnings.warn(f"neuron units are masked layer by layer: {e}", stacklevel=3)
        return None


@dataclass(frozen=True)
class Targets:
    """The layers a granularity prunes and, for a unit granularity, the model's
    dependency groups (None: untraceable, units chosen layer by layer). Traced once per
    model: the pruning phase keeps it for all its events (masks do not change the graph)."""

    modules: dict[str, nn.Module]
    groups: list[Any] | None = None


def find_targets(model: nn.Module, granularity: str, exclude: Iterable[str] = ()) -> Targets:
    """The layers a granularity prunes. Unit granularities: the producers of every
    group that can shrink (not tied to the model input or output, so the head's
    classes stay) with none of its layers in ``exclude``."""
    check_exclude(model, exclude)
    units = get(granularity).removes_units  # the head's units are classes: it stays
    groups = unit_groups(model) if units else None
    if groups is None:
        return Targets(prunable_modules(model, exclude=exclude, include_last=not units))
    excluded = set(exclude)
    shrinkable = [g for g in groups if g.fixed is None and not excluded & set(g.producers)]
    names = {p for g in shrinkable for p in g.producers}
    found = {n: m for n, m in model.named_modules() if n in names}
    if not found:
        raise PrunekitError(
            f"{type(model).__name__} has no output units that can be removed (every "
            "Linear/Conv feeds the output or is excluded)"
        )
    return Targets(found, groups)


def target_modules(
    model: nn.Module, granularity: str, exclude: Iterable[str] = ()
) -> dict[str, nn.Module]:
    """The layers a granularity prunes (:func:`find_targets` without the groups)."""
    return find_targets(model, granularity, exclude).modules


def _ties(groups: list[Any], modules: dict[str, nn.Module]) -> tuple[list[list[str]], list[Any]]:
    """Tied producer lists for the granularity (layers outside any shrinkable group
    stand alone) and the groups they come from."""
    ties, used, covered = [], [], set()
    for g in groups:
        tie = [p for p in g.producers if p in modules]
        if g.fixed is None and tie:
            ties.append(tie)
            used.append(g)
            covered |= set(tie)
    ties += [[n] for n in modules if n not in covered]
    return ties, used


def _follower_masks(model: nn.Module, groups: list[Any], modules: dict[str, nn.Module]) -> dict:
    """Masks for the BatchNorm / depthwise layers after pruned units: a removed
    channel must be exactly zero after them too (gamma and beta zeroed), else BN's
    beta would keep it alive as a constant and removal would change the outputs."""
    masks = {}
    for g in groups:
        first = next(p for p in g.producers if p in modules)
        keep = out_in(modules[first], get_mask(modules[first])).flatten(1).ne(0).any(1).float()
        for name in g.followers:
            m = model.get_submodule(name)
            for param in ("weight", "bias"):
                t = original(m, param)
                if t is not None:
                    masks[f"{name}.{param}"] = keep.view(-1, *[1] * (t.dim() - 1)).expand_as(t)
    return masks


def prune_step(
    model: nn.Module,
    *,
    criterion: str,
    granularity: str,
    sparsity: float,
    scope: str,
    ctx: Context | None = None,
    targets: Targets | None = None,
    **granularity_args: Any,
) -> dict[str, torch.Tensor]:
    """Score, select and apply masks so that a ``sparsity`` fraction of the units of
    removal is pruned. Returns the masks applied (``{"fc1.weight": mask, ...}``).
    ``sparsity`` is trusted: checked by the callers at the boundary (``prune``,
    ``Pruner``, ``RunConfig``). ``targets``: from :func:`find_targets` on this model
    (default: found here, tracing the model for a unit granularity)."""
    gran = get(granularity)
    targets = targets if targets is not None else find_targets(model, granularity)
    modules = targets.modules
    ctx = ctx or Context()
    crit = CRITERIA.get(criterion)
    if isinstance(crit, Criterion) and crit.solver and granularity in crit.solver_granularities:
        # Wanda / SparseGPT choose masks (and update weights) layer by layer themselves
        return crit.solver(model, modules, ctx, sparsity, scope, granularity, **granularity_args)
    scores = crit(model, modules, ctx)
    missing = [n for n in modules if n not in scores]
    if missing:
        raise PrunekitError(f"criterion gave no scores for layers {missing}")
    options = gran.options(granularity_args)
    groups = targets.groups
    if groups is not None:
        ties, groups = _ties(groups, modules)
        masks = gran.masks(modules, scores, sparsity, scope, options, ties=ties)  # type: ignore[call-arg]
    else:
        masks = gran.masks(modules, scores, sparsity, scope, options)
    for key, mask in masks.items():
        mod_name, _, param = key.rpartition(".")
        apply_mask(modules[mod_name], mask, param)
    if groups:
        followers = _follower_masks(model, groups, modules)
        for key, mask in followers.items():
            mod_name, _, param = key.rpartition(".")
            apply_mask(model.get_submodule(mod_name), mask.contiguous(), param)
        masks.update(followers)
    sync_tied(model)
    return masks


def prune(
    model: nn.Module,
    # Defaults: the run schema's (RunConfig), the same as the CLI's.
    method: str = run_default("method"),
    sparsity: float = run_default("sparsity"),
    *,
    scope: str | None = run_default("scope"),
    granularity: str | None = run_default("granularity"),
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = run_default("seed"),
    exclude: Iterable[str] = (),
    recalibrate_bn: bool = run_default("recalibrate_bn"),
    **granularity_args: Any,
) -> nn.Module:
    """Prune ``model`` in place with a registered method's criterion and return it.

    ``sparsity`` is the fraction of units of removal (weights, or neurons for
    ``granularity="neuron"``) to prune, in [0, 1). ``data`` is an ``(x, y)``
    calibration batch for data-driven criteria. Methods whose objective needs
    training (l1, l0, noise models, entropy regularizers) are applied here by their
    criterion only; ``prunekit.run`` runs their full training phase.
    With ``data`` and ``recalibrate_bn`` (default), BatchNorm running statistics are
    re-estimated on ``data`` afterwards (no weight changes; see
    ``reconstruction/batchnorm.py``).
    """
    from .methods import get_method

    m = get_method(method)
    gran = granularity or m.granularity
    targets = find_targets(model, gran, exclude)
    if not any(isinstance(p, torch.Tensor) for p in model.parameters()):
        raise PrunekitError("model has no parameters")
    gran_args = {**(m.granularity_args if gran == m.granularity else {}), **granularity_args}
    # The library boundary: the granularity's own target check (N:M: 1 - n/m);
    # prune_step and the granularity's masks trust it.
    unit = get(gran)
    own = {k: v for k, v in gran_args.items() if k in unit.Options.names()}
    unit.check_sparsity(sparsity, unit.options(own))
    gen = torch.Generator().manual_seed(seed)
    prune_step(
        model,
        criterion=m.criterion,
        granularity=gran,
        sparsity=sparsity,
        scope=scope or m.scope,
        ctx=Context(data=data, generator=gen, options=dict(m.criterion_args)),
        targets=targets,
        **gran_args,
    )
    if recalibrate_bn and data is not None:
        from .reconstruction.batchnorm import recalibrate_batchnorm

        recalibrate_batchnorm(model, data[0])
    return model

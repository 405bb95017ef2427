"""Layer-sequential calibration: the inputs each layer sees, captured with hooks.

SparseGPT and Wanda prune one layer at a time from the inputs ``X`` that layer
receives. Calibrating *in sequence* (Frantar & Alistarh 2023, §3.5; Sun et al. 2023)
means that layer ``l`` is calibrated on the inputs produced by the model whose
layers ``< l`` are already pruned and updated, so each layer also compensates the
error the earlier ones introduced.

- :func:`forward_order` runs one example through the model and lists the target
  layers in the order they are first called (not the order they were registered).
- :func:`capture` feeds the calibration inputs through the model with a forward
  pre-hook on one layer that accumulates its inputs into :class:`InputStats`; the
  hook stops the forward right after it (nothing after the layer is computed).
- :func:`collect` does the same for several layers in one pass (no stopping): the
  statistics of the current model, for criteria that score all layers at once.

The model runs in eval mode (BatchNorm uses its running statistics, dropout is off)
under ``no_grad``; its mode is restored afterwards. Calibration inputs stream in
batches of ``batch_size``; the statistics are exact sums, so the batch size only
changes memory use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import torch
from torch import nn

from ...registry import PrunekitError
from .layers import inputs_2d, to_2d
from .stats import InputStats


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward is not needed."""


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def forward_order(model: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor) -> list[str]:
    """Names of ``modules`` in the order a forward pass first calls them; layers the
    forward never reaches come last, in registration order."""
    seen: list[str] = []
    handles = [
        m.register_forward_pre_hook(lambda _m, _i, name=name: seen.append(name))
        for name, m in modules.items()
    ]
    try:
        with _eval(model):
            model(x[:1].to(_device(model)))
    finally:
        for h in handles:
            h.remove()
    order = list(dict.fromkeys(seen))
    return order + [n for n in modules if n not in order]


def _columns(module: nn.Module) -> int:
    w = module.weight_orig if hasattr(module, "weight_orig") else module.weight
    return to_2d(module, w).shape[1]


def capture(
    model: nn.Module,
    module: nn.Module,
    x: torch.Tensor,
    *,
    hessian: bool = True,
    batch_size: int = 512,
    name: str = "layer",
) -> InputStats:
    """Statistics of the inputs ``module`` receives when ``x`` runs through ``model``."""
    stats = InputStats(_columns(module), hessian=hessian, device=_device(model))

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        stats.update(inputs_2d(mod, inputs[0].detach()))
        raise _Stop

    handle = module.register_forward_pre_hook(hook)
    try:
        with _eval(model):
            for i in range(0, x.shape[0], batch_size):
                with suppress(_Stop):
                    model(x[i : i + batch_size].to(_device(model)))
    finally:
        handle.remove()
    if stats.count == 0:
        raise PrunekitError(f"layer {name!r} is never called in the model's forward pass")
    return stats


def collect(
    model: nn.Module,
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    *,
    hessian: bool = False,
    batch_size: int = 512,
) -> dict[str, InputStats]:
    """Input statistics of every layer in ``modules`` from one pass over ``x``."""
    stats = {
        n: InputStats(_columns(m), hessian=hessian, device=_device(model))
        for n, m in modules.items()
    }
    handles = [
        m.register_forward_pre_hook(
            lambda mod, inputs, n=n: stats[n].update(inputs_2d(mod, inputs[0].detach()))
        )
        for n, m in modules.items()
    ]
    try:
        with _eval(model):
            for i in range(0, x.shape[0], batch_size):
                model(x[i : i + batch_size].to(_device(model)))
    finally:
        for h in handles:
            h.remove()
    missing = [n for n, s in stats.items() if s.count == 0]
    if missing:
        raise PrunekitError(f"layers {missing} are never called in the model's forward pass")
    return stats

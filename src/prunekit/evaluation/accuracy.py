"""Classification accuracy: argmax predictions in eval mode, under ``torch.no_grad()``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import PrunekitError
from .cost import eval_mode


def predict(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted labels (argmax over dim 1 of the logits), int64 on the CPU, shape (N,).

    Runs in batches of ``batch_size`` on the device of the model's first parameter;
    the model's training flags are restored afterwards.
    """
    if x.ndim == 0 or x.shape[0] == 0:
        raise PrunekitError("cannot predict on an empty input")
    if batch_size < 1:
        raise PrunekitError(f"batch size must be >= 1, got {batch_size}")
    p = next(model.parameters(), None)
    device = p.device if p is not None else x.device
    with eval_mode(model), torch.no_grad():
        labels = [
            model(x[i : i + batch_size].to(device)).argmax(dim=1).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(labels)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of samples whose predicted label equals ``y`` (in [0, 1])."""
    if x.ndim == 0 or x.shape[0] == 0:
        raise PrunekitError("cannot compute accuracy on an empty input")
    if y.shape != (x.shape[0],):
        raise PrunekitError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    correct = predict(model, x, batch_size).eq(y.cpu()).sum()
    return int(correct) / x.shape[0]

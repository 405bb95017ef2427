"""Shared pieces of the model zoo: the registry, input normalization and argument checks.

Every zoo constructor takes only JSON-plain keyword arguments (ints, floats, lists of
them), so a model can be rebuilt from ``(name, kwargs)`` read back from a JSON file.
The checks below turn bad values into one-line :class:`PrunekitError` messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunekit.registry import PrunekitError, Registry

MODELS: Registry = Registry("model")


class Normalize(nn.Module):
    """``(x - mean) / std`` for images already scaled to [0, 1].

    ``mean``/``std`` are buffers, so they are saved in the state_dict with the weights.
    A scalar is stored with shape ``(1,)`` (broadcasts over any input); a per-channel
    list is stored with shape ``(C, 1, 1)``.
    """

    def __init__(self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0):
        super().__init__()
        self.register_buffer("mean", _stat(mean))
        self.register_buffer("std", _stat(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _stat(value: float | Sequence[float]) -> torch.Tensor:
    t = torch.tensor(value, dtype=torch.float32)
    return t.reshape(1) if t.dim() == 0 else t.reshape(-1, 1, 1)


def check_int(model: str, key: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PrunekitError(f"model {model!r}: {key} must be an int, got {value!r}")
    if value < minimum:
        raise PrunekitError(f"model {model!r}: {key} must be >= {minimum}, got {value}")
    return value


def check_ints(model: str, key: str, value: object, length: int | None = None) -> list[int]:
    """A list/tuple of positive ints, optionally of an exact length."""
    if not isinstance(value, list | tuple) or not value:
        raise PrunekitError(
            f"model {model!r}: {key} must be a non-empty list of ints, got {value!r}"
        )
    if length is not None and len(value) != length:
        raise PrunekitError(f"model {model!r}: {key} needs {length} values, got {len(value)}")
    return [check_int(model, key, v) for v in value]


def check_stat(model: str, key: str, value: object, channels: int, positive: bool) -> list[float]:
    """``mean``/``std``: a number, or one number per input channel."""
    values = list(value) if isinstance(value, list | tuple) else [value]
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not ok or len(values) not in (1, channels):
        raise PrunekitError(
            f"model {model!r}: {key} must be a number or {channels} numbers, got {value!r}"
        )
    if positive and any(v <= 0 for v in values):
        raise PrunekitError(f"model {model!r}: {key} must be > 0, got {value!r}")
    return values


def check_common(
    model: str,
    in_channels: object,
    input_size: object,
    num_classes: object,
    mean: object,
    std: object,
) -> None:
    """Validate the keyword arguments every zoo model shares."""
    check_int(model, "in_channels", in_channels)
    check_int(model, "input_size", input_size)
    check_int(model, "num_classes", num_classes)
    check_stat(model, "mean", mean, in_channels, positive=False)
    check_stat(model, "std", std, in_channels, positive=True)


def too_small(model: str, input_size: int, minimum: int) -> PrunekitError:
    return PrunekitError(
        f"model {model!r}: input_size={input_size} is too small for this architecture "
        f"(needs >= {minimum})"
    )

"""The result record's fixed parts: its schema tag, what a run returns, and the
versions that produced it. Shared by the zoo pipeline, the user-object pipeline and the
comparison's peer rows, which all write ``result.json`` in the same shape."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..distributed import world_size

RESULT_SCHEMA = "prunekit.result/v1"


@dataclass
class Run:
    """A finished run: the (pruned, finalized) model, its result record and the
    architecture (``model.json``'s constructor name and kwargs)."""

    model: nn.Module
    result: dict[str, Any]
    arch: dict[str, Any]


def versions() -> dict[str, Any]:
    """What produced a result: package versions, torch threads and process count."""
    return {
        "prunekit": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "processes": world_size(),
    }

"""The model zoo: ``create_model(name, **kwargs)``, ``model_names()``, ``default_recipe(name)``.

Every model starts with a :class:`Normalize` module and expects pixels scaled to [0, 1].
All constructor kwargs are JSON-plain, so ``create_model(name, **kwargs)`` can be rebuilt
from a saved ``(name, kwargs)`` pair, including the width arguments that describe a
structurally pruned model.
"""

from __future__ import annotations

import inspect

from torch import nn

from prunekit.models import lenet, resnet, seedcnn
from prunekit.models.common import MODELS, Normalize
from prunekit.registry import PrunekitError

__all__ = ["MODELS", "Normalize", "create_model", "default_recipe", "model_names"]

_RECIPES: dict[str, dict] = {**lenet.RECIPES, **seedcnn.RECIPES, **resnet.RECIPES}


def model_names() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs) -> nn.Module:
    """Build zoo model ``name``; unknown or invalid kwargs raise :class:`PrunekitError`."""
    builder = MODELS.get(name)
    accepted = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise PrunekitError(
            f"model {name!r}: unknown argument(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return builder(**kwargs)


def default_recipe(name: str) -> dict:
    """A copy of the model's default SGD-momentum training recipe."""
    MODELS.get(name)  # unknown names list the known ones
    return dict(_RECIPES[name])

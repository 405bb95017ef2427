"""prunekit: prune PyTorch models and compare pruning methods honestly.

Public API (see README):

- ``prune(model, method=..., sparsity=..., scope=..., granularity=..., data=None)``
- ``Pruner(model, method, sparsity, steps, optimizer=..., data=...)``: any method in
  the user's own training loop (``transform``/``penalty``/``step``/``finalize``)
- ``finalize(model)``, ``sparsity(model)``
- ``load(run_dir)``, ``run(RunConfig(...))``
- ``shrink(model, example_inputs)``: zeroed units removed (surgery / HF MLP / Torch-Pruning)
- ``save(model, dir)`` / ``load(dir, model=fresh_instance)``: any user model, no pickle
- ``deploy(model, input_shape, runtime=...)``: BN folded, exact rewrites, a fast runtime
- registries: ``MODELS``, ``DATASETS``, ``METHODS``, ``CRITERIA``, ``OBJECTIVES``
"""

from ._version import __version__
from .autoshrink import shrink
from .config import RunConfig
from .data import DATASETS, load_dataset
from .inference.deploy import deploy
from .models import MODELS, create_model
from .pipeline import run
from .pruner import Pruner
from .pruning.criteria import CRITERIA
from .pruning.masks import finalize, sparsity
from .pruning.methods import METHODS, Method
from .pruning.objectives import OBJECTIVES
from .pruning.step import prune
from .registry import PrunekitError
from .userio import load, save

__all__ = [
    "CRITERIA",
    "DATASETS",
    "METHODS",
    "MODELS",
    "OBJECTIVES",
    "Method",
    "PrunekitError",
    "Pruner",
    "RunConfig",
    "__version__",
    "create_model",
    "deploy",
    "finalize",
    "load",
    "load_dataset",
    "prune",
    "run",
    "save",
    "shrink",
    "sparsity",
]

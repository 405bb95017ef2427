"""prunekit: prune PyTorch models and compare pruning methods honestly.

Public API (see README):

- ``prune(model, method=..., sparsity=..., scope=..., granularity=..., data=None)``
- ``Pruner(model, method, sparsity, steps, optimizer=..., data=...)``: any method in
  the user's own training loop (``transform``/``penalty``/``step``/``finalize``)
- ``finalize(model)``, ``sparsity(model)``
- ``load(run_dir)``, ``run(RunConfig(...))``
- ``compare(model_factory, train=..., test=..., methods=[...], sparsities=[...], out=DIR)``:
  the comparison harness (SQLite store, resume, report) on the user's objects
- ``shrink(model, example_inputs)``: zeroed units removed (surgery / HF MLP / Torch-Pruning)
- ``prune_heads(model, heads=..., neurons=..., criterion=..., data=ids)``: whole attention
  heads and MLP units of a transformers GPT-2/BERT chosen, zeroed and removed
- ``save(model, dir)`` / ``load(dir, model=fresh_instance)``: any user model, no pickle
- ``deploy(model, input_shape, runtime=...)``: BN folded, exact rewrites, a fast runtime
- registries: ``MODELS``, ``DATASETS``, ``METHODS``, ``CRITERIA``, ``OBJECTIVES``
"""

from ._version import __version__
from .autoshrink import shrink
from .config import RunConfig
from .data import DATASETS, load_dataset
from .evaluation.cost import achieved_sparsity as sparsity
from .experiments.usercompare import compare
from .inference.deploy import deploy
from .lm.structured import prune_heads
from .models import MODELS, create_model
from .pipeline import run
from .pruner import Pruner
from .pruning.criteria import CRITERIA
from .pruning.masks import finalize
from .pruning.methods import METHODS, Method
from .pruning.objectives import OBJECTIVES
from .pruning.step import prune
from .registry import PrunekitError
from .storage.userio import load, save

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
    "compare",
    "create_model",
    "deploy",
    "finalize",
    "load",
    "load_dataset",
    "prune",
    "prune_heads",
    "run",
    "save",
    "shrink",
    "sparsity",
]

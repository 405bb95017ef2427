"""Language models: one more kind of model (transformers causal LMs) and data (tokens),
measured in perplexity. See ``run.py`` for the run (``config.py`` its options,
``train.py`` dense training and recovery, ``measure.py`` its figures, ``record.py`` what
it returns and saves, ``struct_lm.py`` the structured path, ``reload.py`` a saved run),
``prune.py`` for the methods, ``blocks.py`` for block-by-block calibration, ``text.py``
for corpora and splits."""

from .config import LMConfig, is_lm_config
from .record import LMRun
from .reload import reload
from .run import run_lm
from .train import dense_for

__all__ = ["LMConfig", "LMRun", "dense_for", "is_lm_config", "reload", "run_lm"]

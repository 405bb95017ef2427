"""Language models: one more kind of model (transformers causal LMs) and data (tokens),
measured in perplexity. See ``run.py`` for the run, ``prune.py`` for the methods,
``blocks.py`` for block-by-block calibration, ``text.py`` for corpora and splits."""

from .run import LMConfig, LMRun, dense_for, is_lm_config, reload, run_lm

__all__ = ["LMConfig", "LMRun", "dense_for", "is_lm_config", "reload", "run_lm"]

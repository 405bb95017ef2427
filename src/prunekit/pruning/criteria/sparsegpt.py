"""SparseGPT criterion (Frantar & Alistarh 2023): OBS saliency ``w_ij² / [H⁻¹]_jj`` with
``H = 2 X Xᵀ`` from the calibration data; at granularity weight / nm the whole step is
SparseGPT's layer-sequential pruning with weight updates. See
``pruning/reconstruction/criterion.py``."""

from __future__ import annotations

from ..reconstruction.criterion import make_criterion, obs_layer_scores
from . import CRITERIA

CRITERIA.add("sparsegpt", make_criterion("sparsegpt", obs_layer_scores))

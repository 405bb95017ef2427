"""Wanda criterion (Sun et al. 2023): ``score(w_ij) = |w_ij| · ||X_j||_2`` over the
calibration data; at granularity weight / nm the whole step is Wanda's per-row,
layer-sequential pruning. See ``pruning/reconstruction/criterion.py``."""

from __future__ import annotations

from ..reconstruction.criterion import make_criterion, wanda_layer_scores
from . import CRITERIA

CRITERIA.add("wanda", make_criterion("wanda", wanda_layer_scores))

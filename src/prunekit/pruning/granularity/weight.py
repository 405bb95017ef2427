"""``weight`` granularity: unstructured pruning, each weight its own unit of removal.

Group score = the weight's score. A unit criterion's score (one per output unit, e.g.
entropy) scores each weight through its unit: ``score(w_ij) = s_i``. A layer may lose
every weight (scope ``"global"``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...registry import PrunekitError
from ..masks import original
from .base import GRANULARITIES, Granularity, _prepare, _select, per_weight


class Weight(Granularity):
    name = "weight"
    regularized_as = "weight"

    def masks(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        options: Any,
    ) -> dict[str, torch.Tensor]:
        s = float(sparsity)  # checked at the boundary (see Granularity.__call__)
        prepared = {n: _prepare(modules[n], per_weight(modules[n], scores[n])) for n in modules}
        for n, sc in prepared.items():
            if sc.shape != original(modules[n]).shape:
                raise PrunekitError(
                    f"criterion gave layer {n!r} scores of shape {tuple(sc.shape)}; "
                    "weight granularity needs one score per weight"
                )
        drop = _select({n: sc.flatten() for n, sc in prepared.items()}, s, scope, keep_one=False)
        return {f"{n}.weight": (~drop[n]).view(prepared[n].shape).float() for n in modules}


GRANULARITIES.add("weight", Weight())

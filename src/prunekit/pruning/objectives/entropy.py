"""Information-theory objectives (spec §3): maximum- and minimum-entropy pruning.

Both add a term over the units j of the prunable layers (the classifier head excluded
under the neuron granularity)::

    maxent:  L = L_task + lam * sum_j H_j
    minent:  L = L_task + lam * sum_j min(0, H_j)

``H_j = 0.5 * log(2 pi e (sigma_j^2 + eps))`` is the Gaussian differential entropy of
unit j's activation on the *current training batch* (read after its nonlinearity,
conv channels spatially pooled per example; see :mod:`prunekit.pruning.entropy`), with
``sigma_j^2`` the batch variance. Forward hooks collect those activations during the
training forward pass itself, so the term costs one variance per unit and no extra
forward.

Sign convention: the spec writes both as losses, and prunekit minimizes them as
written. So, precisely:

- ``maxent`` pushes *every* unit's activation entropy **down**. Per unit the term is
  ``lam * log(sigma_j) + const``, a log penalty on the activation's spread: its pull
  ``lam / sigma_j`` is strongest on units that already vary little, so weak units
  collapse towards constants (sigma -> 0, H -> the floor ``0.5 log(2 pi e eps)``) while
  units the task needs hold their spread. It is therefore a sparsifying regularizer
  (like a log-sum penalty on unit scales), not an entropy *maximizer*; minimizing
  ``L - lam * sum H`` instead would be unbounded (H grows without limit as activations
  are scaled up), which is why the opposite sign is not offered. Because H is
  scale-dependent, a ReLU network can also lower it by shrinking a layer's activations
  and growing the next layer's weights (weight decay resists that).
- ``minent`` pushes down only the units that are already below ``H = 0``, i.e. with
  ``sigma_j^2 + eps < 1 / (2 pi e)`` (sigma < 0.242 in activation units); units at or
  above it get exactly zero gradient. It polarizes: low-entropy units are driven to
  constants, the others are left to the task. With every ``H_j >= 0`` the term is 0.

Both then prune with the ``entropy`` criterion, which finds the collapsed units first.
What the terms actually did is measured, not assumed: the objective records the
per-unit batch entropies of the first regularized batch and of the last
``trace_batches`` and, at the pruning event, the criterion's calibration entropies; the
pipeline stores :meth:`EntropyObjective.report` in result.json (``objective_report``).
"""

from __future__ import annotations

from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...registry import PrunekitError
from ..entropy import VAR_FLOOR, batch_gaussian_entropy, gaussian_entropy, tapped
from ..method_docs import MethodDoc, describe
from ..methods import Method, register
from ..options import Options, RunFacts, option
from . import Objective, objective

# "Collapsed" in reports: activation std below this (in the activation's own units).
COLLAPSED_STD = 0.01


class EntropyObjective(Objective):
    """``lam * sum_j H_j`` (``kind="maxent"``) or ``lam * sum_j min(0, H_j)`` (``"minent"``)."""

    def __init__(self, kind: str, lam: float, eps: float, trace_batches: int = 20) -> None:
        # The values were checked by the options' validate (the factory's boundary).
        self.name = self.kind = kind
        self.lam, self.eps, self.trace_batches = float(lam), float(eps), int(trace_batches)
        self.model: nn.Module | None = None
        self._hooks: AbstractContextManager[Any] | None = None
        self._acts: dict[str, Tensor] = {}
        self.layers: list[str] = []
        self.batches = 0
        self._first: dict[str, Tensor] = {}
        self._last: deque[dict[str, Tensor]] = deque(maxlen=self.trace_batches)
        self.calibration: dict[str, Any] | None = None

    # -- objective hooks ------------------------------------------------------------------
    def attach(self, model: nn.Module, modules: dict[str, nn.Module]) -> None:
        self.model, self.layers = model, list(modules)
        self._hooks = tapped(model, dict(modules), self._store)
        self._hooks.__enter__()

    def _store(self, layer: str, acts: Tensor) -> None:
        # Only the training forward feeds the penalty (not evaluation or calibration passes).
        if torch.is_grad_enabled() and self.model is not None and self.model.training:
            self._acts[layer] = acts

    def penalty(self, model: nn.Module) -> Tensor | None:
        missing = [n for n in self.layers if n not in self._acts]
        if missing:
            raise PrunekitError(
                f"{self.kind}: no activations of layer(s) {missing} in this "
                "training forward; their activations cannot be hooked"
            )
        entropies = {n: batch_gaussian_entropy(self._acts[n], self.eps) for n in self.layers}
        self._acts.clear()
        self._trace(entropies)
        if self.lam == 0.0:
            return None
        h = torch.cat([entropies[n] for n in self.layers])
        term = h.sum() if self.kind == "maxent" else torch.clamp(h, max=0.0).sum()
        return self.lam * term

    def detach(self, model: nn.Module) -> None:
        if self._hooks is not None:
            self._hooks.__exit__(None, None, None)
            self._hooks = None
        self._acts.clear()

    def describe(self) -> str:
        return f"{self.kind} lambda={self.lam:g} eps={self.eps:g}"

    # -- measurement ----------------------------------------------------------------------
    def _trace(self, entropies: dict[str, Tensor]) -> None:
        detached = {n: h.detach().double() for n, h in entropies.items()}
        if self.batches == 0:  # the penalty has not moved any weight yet
            self._first = detached
        self._last.append(detached)
        self.batches += 1

    def record_calibration(self, scores: dict[str, Tensor], estimator: str) -> None:
        """Called by the entropy criterion at the pruning event."""
        self.calibration = {"estimator": estimator, **summarize(scores)}

    def report(self) -> dict[str, Any]:
        """Per-unit batch entropies (Gaussian, nats): ``start`` on the first regularized
        batch (before any update), ``end`` averaged over the last ``trace_batches``;
        their summaries; and the criterion's calibration entropies at the pruning event."""
        out: dict[str, Any] = {
            "objective": self.describe(),
            "regularized_batches": self.batches,
            "trace_batches": self.trace_batches,
        }
        if self.batches:
            last = {n: sum(b[n] for b in self._last) / len(self._last) for n in self.layers}
            floor = float(gaussian_entropy(torch.tensor(COLLAPSED_STD**2), self.eps))
            out["start"] = summarize(self._first, collapsed_below=floor)
            out["end"] = summarize(last, collapsed_below=floor)
        if self.calibration is not None:
            out["at_prune"] = self.calibration
        return out


def summarize(per_unit: dict[str, Tensor], collapsed_below: float | None = None) -> dict[str, Any]:
    """Mean, fraction negative (and collapsed), and the per-unit values (4 decimals)."""
    h = torch.cat([v.flatten().double() for v in per_unit.values()])
    out: dict[str, Any] = {"mean": float(h.mean()), "frac_negative": float((h < 0).double().mean())}
    if collapsed_below is not None:
        out[f"frac_std_below_{COLLAPSED_STD:g}"] = float((h < collapsed_below).double().mean())
    out["units"] = {n: [round(float(v), 4) for v in t.flatten()] for n, t in per_unit.items()}
    return out


_EPS = "variance floor of the Gaussian entropy estimate"
_TRACE = "batches averaged per point of the reported entropy trace"


def _check(kind: str, o: MaxentOptions | MinentOptions) -> None:
    if not float(o.lam) >= 0.0:
        raise PrunekitError(f"{kind}: lambda must be >= 0, got {o.lam}")
    if not float(o.eps) > 0.0:
        raise PrunekitError(f"{kind}: eps (variance floor) must be > 0, got {o.eps}")
    if int(o.trace_batches) < 1:
        raise PrunekitError(f"{kind}: trace_batches must be >= 1, got {o.trace_batches}")


@dataclass(frozen=True)
class MaxentOptions(Options):
    lam: float = option(1e-3, "strength of the entropy term")
    eps: float = option(VAR_FLOOR, _EPS)
    trace_batches: int = option(20, _TRACE)

    def validate(self, run: RunFacts) -> None:
        _check("maxent", self)


@dataclass(frozen=True)
class MinentOptions(Options):
    lam: float = option(1e-2, "strength of the entropy term")
    eps: float = option(VAR_FLOOR, _EPS)
    trace_batches: int = option(20, _TRACE)

    def validate(self, run: RunFacts) -> None:
        _check("minent", self)


@objective("maxent", MaxentOptions)
def maxent(o: MaxentOptions, run: RunFacts) -> EntropyObjective:
    """Maximum-entropy pruning term: ``+ lam * sum_j H_j`` (minimized: pushes every H_j down)."""
    return EntropyObjective("maxent", o.lam, o.eps, o.trace_batches)


@objective("minent", MinentOptions)
def minent(o: MinentOptions, run: RunFacts) -> EntropyObjective:
    """Minimum-entropy pruning term: ``+ lam * sum_j min(0, H_j)`` (pushes only H_j < 0 down)."""
    return EntropyObjective("minent", o.lam, o.eps, o.trace_batches)


register(
    Method(
        "entropy",
        criterion="entropy",
        granularity="neuron",
        scope="layer",
        description="Units with the lowest activation entropy (histogram over calibration data, "
        "conv channels pooled) removed first (Luo & Wu 2017); no training term.",
    )
)
register(
    Method(
        "maxent",
        criterion="entropy",
        granularity="neuron",
        scope="layer",
        objective="maxent",
        description="Maximum-entropy pruning: L = L_task + lambda * sum_j H_j (Gaussian entropy of "
        "unit activations per batch; minimized, it collapses weak units), then entropy criterion.",
    )
)
register(
    Method(
        "minent",
        criterion="entropy",
        granularity="neuron",
        scope="layer",
        objective="minent",
        description="Minimum-entropy pruning: L = L_task + lambda * sum_j min(0, H_j) (only units "
        "with H < 0 pushed down), then entropy criterion.",
    )
)

_H_SYMBOLS = {
    "H_j": "the entropy of unit j's activation (after its nonlinearity, conv channels "
    "pooled), here 0.5 log(2 pi e (sigma_j^2 + eps)) on the current training batch",
    r"\sigma_j^2": "the batch variance of unit j's activation",
    r"\lambda": "penalty strength (`--lambda`)",
}
describe(
    "entropy",
    MethodDoc(
        "Entropy-based unit pruning",
        r"H_j = -\sum_{b=1}^{B} p_{j,b} \log p_{j,b},\quad \text{remove the units with the "
        r"lowest } H_j",
        {
            "H_j": "entropy (nats) of unit j's activation over the calibration data",
            "p_{j,b}": "fraction of calibration examples whose activation falls in bin b",
            "B": "number of histogram bins (`-o bins=`, default 32)",
        },
        "Luo & Wu 2017, An Entropy-based Pruning Method for CNN Compression",
        "https://arxiv.org/abs/1706.05791",
        "When you want whole units removed by what they do on data rather than by weight "
        "size: units whose output hardly varies carry little information. Needs a "
        "calibration set (the validation split in a run).",
    ),
)
describe(
    "maxent",
    MethodDoc(
        "Maximum-entropy pruning",
        r"L = L_{task} + \lambda \sum_j H_j",
        _H_SYMBOLS,
        "prunekit's founding specification; the entropy criterion: Luo & Wu 2017",
        "https://arxiv.org/abs/1706.05791",
        "Minimized as written, the term lowers every unit's entropy and collapses the "
        "weak ones first, so the entropy criterion then finds them. Read its measured "
        "results before choosing it: it is a research method here, not a default.",
    ),
)
describe(
    "minent",
    MethodDoc(
        "Minimum-entropy pruning",
        r"L = L_{task} + \lambda \sum_j \min(0, H_j)",
        _H_SYMBOLS,
        "prunekit's founding specification; the entropy criterion: Luo & Wu 2017",
        "https://arxiv.org/abs/1706.05791",
        "Only units already below H = 0 are pushed down (the others get no gradient), "
        "which polarizes units into collapsed and useful. Read its measured results "
        "before choosing it: it is a research method here, not a default.",
    ),
)

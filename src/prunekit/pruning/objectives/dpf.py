"""DPF, dynamic pruning with feedback (Lin, Stich, Barba, Dmitriev & Jaggi, ICLR 2020,
"Dynamic Model Pruning with Feedback", https://arxiv.org/abs/2006.07253).

The dense weights ``W`` are kept; the forward and backward passes use the pruned
weights ``W ⊙ M``, and the gradient computed there is applied to the *dense* ``W``
(error feedback)::

    W_{t+1} = W_t - eta_t * g(W_t ⊙ M_t)
    M_t     = top_k(|W_t|),  k = round((1 - s_t) n),  recomputed every ``period`` steps
    s_t     = s_f (1 - (1 - min(t / T_ramp, 1))^3)    (Zhu & Gupta's cubic ramp, s_i = 0)

A pruned weight keeps receiving the gradient of the pruned model, so a weight cut by a
bad early decision can grow back above the threshold and re-enter the mask at the next
update; the mask is recomputed from the dense weights, not from the masked ones. The
mask is global magnitude by default (the method's criterion and scope: ``lamp`` scores
work too, each recomputation then uses LAMP's allocation).

How it is run (the swap implementation: no extra forward cost): between steps the
parameter holds ``W ⊙ M`` and the objective keeps a copy of ``W``; right before each
optimizer step (a step pre-hook of the optimizer, set up by ``Pruner``) the pruned
entries get their dense values back, so the optimizer steps on ``W`` with the gradient
taken at ``W ⊙ M`` (momentum and weight decay act on the dense weights, as in the
paper); after the step ``W`` is stored, the mask is recomputed if due, and the
parameter is masked again. It therefore needs the loop's optimizer (``Pruner(...,
optimizer=opt)``; ``prunekit.run`` passes its own).

The period: between recomputations a pruned weight moves open-loop (its gradient does
not depend on its own value, and momentum amplifies it), and the weights that re-enter
together then change the function at once. The paper's 16 steps (ResNets with
BatchNorm) collapsed to chance or hit a NaN loss on LeNet-300-100 at the recipe lr 0.1
with momentum 0.9 while ramping to 98 %
(``benchmarks/results/beat_peer_lenet300_dpf_period16.md``); 8 ended below one-shot
magnitude there; 2 was above 4 at 95 / 98 / 99 % on three seeds
(``benchmarks/results/beat_peer_lenet300_dpf.md``): the default is 2. Each
recomputation sorts the pruned layers' weights once (global scope).

Phases of the sparsify budget (``objective_phase="before-prune"``): the feedback window
covers the whole phase but its last step; the sparsity ramps to the target over the
first ``ramp_fraction`` of the window; the mask keeps being recomputed at the target
until the last ``freeze_fraction`` of the window, where it is fixed (the kept weights
then train exactly as in masked fine-tuning; 0, the paper's setting, recomputes to the
end). At the window's end the method's one-shot event fixes the mask with the same
criterion on ``W ⊙ M``, which is ``M`` itself (its zeros are the lowest scores, and the
count is the target's), the dense copy is dropped and the result is plain ``W ⊙ M``:
no dense weight survives in the saved model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...registry import PrunekitError
from ..criteria import CRITERIA, Context
from ..granularity import get as get_granularity
from ..masks import original
from ..method_docs import MethodDoc, describe
from ..methods import Method, register
from ..options import Options, RunFacts, option
from ..schedules import cubic_sparsity
from . import Objective, objective

#: Criteria whose scores come from the weights alone (DPF rescoring needs no data).
SCORES_FROM_WEIGHTS = ("magnitude", "lamp")

#: The window covers the phase but its last step: the event that fixes the mask must
#: come before the last step (``Pruner``'s rule), and no whole-phase objective phase has
#: one-shot events at its end.
WINDOW = 1.0 - 1e-9


def check_weight_scores(name: str, run: RunFacts) -> None:
    """Methods that re-rank weights they keep training (dpf, acdc) need the weight
    granularity and a criterion computed from the weights alone (no data pass)."""
    if run.granularity != "weight":
        raise PrunekitError(f"{name}: granularity must be 'weight', got {run.granularity!r}")
    if run.criterion not in SCORES_FROM_WEIGHTS:
        raise PrunekitError(
            f"{name}: criterion must be one of {', '.join(SCORES_FROM_WEIGHTS)} (scores "
            f"from the weights), got {run.criterion!r}"
        )


def weight_masks(
    model: nn.Module, modules: dict[str, nn.Module], sparsity: float, criterion: str, scope: str
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks of ``modules`` at ``sparsity`` from the weights they hold now
    (the criterion's scores, the weight granularity's exact count)."""
    scores = CRITERIA.get(criterion)(model, modules, Context())
    masks = get_granularity("weight").masks(modules, scores, sparsity, scope, None)
    return {n: masks[f"{n}.weight"].to(original(m).device).bool() for n, m in modules.items()}


def window_marks(window: int, ramp_fraction: float, freeze_fraction: float) -> tuple[int, int]:
    """``(ramp_end, last_update)`` in optimizer steps of a window of ``window`` steps:
    the sparsity reaches the target after ``ramp_end`` steps, the mask is recomputed for
    the last time after ``last_update`` steps (at the target: ``ramp_end <= last_update``)."""
    last = window - int(round(freeze_fraction * window))
    ramp = min(max(int(round(ramp_fraction * window)), 1), max(last, 1))
    return ramp, max(last, ramp)


class DPFObjective(Objective):
    """Dense weights kept aside, masks recomputed from them (see the module docstring)."""

    name = "dpf"

    def __init__(self, o: DPFOptions, run: RunFacts) -> None:
        self.o = o
        self.target = float(run.target_sparsity or 0.0)
        self.criterion, self.scope = run.criterion, run.scope
        self.window = run.window_steps
        self.modules: dict[str, nn.Module] = {}
        self.dense: dict[str, torch.Tensor] = {}
        self.keep: dict[str, torch.Tensor] = {}
        self.steps = 0  # optimizer steps taken in the window
        self.updates = 0  # mask recomputations after the first
        self.revived = 0  # weights that re-entered the mask, summed over updates
        self._restored = False
        self.ramp_end, self.last_update = window_marks(
            self.window or 1, o.ramp_fraction, o.freeze_fraction
        )

    def sparsity_at(self, steps: int) -> float:
        """``s_t`` after ``steps`` optimizer steps (the cubic ramp, then the target)."""
        return cubic_sparsity(steps, 0, 1, self.ramp_end, 0.0, self.target)

    @torch.no_grad()
    def attach(self, model: nn.Module, modules: dict[str, nn.Module]) -> None:
        self.modules = dict(modules)
        self._remask(model, self.sparsity_at(0))

    @torch.no_grad()
    def before_step(self, model: nn.Module) -> None:
        for name, m in self.modules.items():
            p = original(m)
            p.copy_(torch.where(self.keep[name], p, self.dense[name]))
        self._restored = True

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        if not self._restored:
            raise PrunekitError(
                "dpf applies each step to the dense weights before the optimizer steps: "
                "pass optimizer= to the Pruner (its step is hooked)"
            )
        self._restored = False
        self.steps += 1
        u = self.steps
        due = u <= self.last_update and (
            u % self.o.period == 0 or u in (self.ramp_end, self.last_update)
        )
        if due:
            before = {n: k.clone() for n, k in self.keep.items()}
            self._remask(model, self.sparsity_at(u))
            self.updates += 1
            self.revived += sum(int((self.keep[n] & ~before[n]).sum()) for n in before)
        else:
            self._store_and_mask()

    def _remask(self, model: nn.Module, sparsity: float) -> None:
        """New masks from the dense weights (the parameters hold them now), then mask."""
        self.keep = weight_masks(model, self.modules, sparsity, self.criterion, self.scope)
        self._store_and_mask()

    def _store_and_mask(self) -> None:
        for name, m in self.modules.items():
            p = original(m)
            # one buffer per layer for the whole phase, overwritten each step (a fresh
            # copy each step cost an allocation of every pruned layer's weights)
            buf = self.dense.get(name)
            if buf is None:
                self.dense[name] = p.detach().clone()
            else:
                buf.copy_(p)
            p.mul_(self.keep[name])

    def detach(self, model: nn.Module) -> None:
        # The parameters hold W ⊙ M (the event's masks agree): the dense copy goes.
        self.dense, self.keep, self.modules = {}, {}, {}

    def report(self) -> dict[str, object]:
        return {
            "objective": self.describe(),
            "mask_updates": self.updates,
            "revived_weights": self.revived,
        }

    def describe(self) -> str:
        return (
            f"dpf period={self.o.period} ramp_fraction={self.o.ramp_fraction:g} "
            f"freeze_fraction={self.o.freeze_fraction:g} ({self.criterion}, {self.scope})"
        )


def _fraction(lo_open: bool):
    def check(key: str, value: float) -> float:
        ok = (0.0 < value <= 1.0) if lo_open else (0.0 <= value < 1.0)
        if not ok:
            bounds = "(0, 1]" if lo_open else "[0, 1)"
            raise PrunekitError(f"dpf: {key} must be in {bounds}, got {value}")
        return value

    return check


def _positive(key: str, value: int) -> int:
    if value < 1:
        raise PrunekitError(f"dpf: {key} must be >= 1, got {value}")
    return value


@dataclass(frozen=True)
class DPFOptions(Options):
    period: int = option(2, "optimizer steps between mask recomputations", _positive)
    ramp_fraction: float = option(
        0.5,
        "fraction of the window over which the sparsity ramps (cubic) to the target",
        _fraction(lo_open=True),
    )
    freeze_fraction: float = option(
        0.0,
        "fraction of the window, at its end, with the mask fixed (0: recompute to the end)",
        _fraction(lo_open=False),
    )

    def validate(self, run: RunFacts) -> None:
        for key, check in (
            ("period", _positive),
            ("ramp_fraction", _fraction(True)),
            ("freeze_fraction", _fraction(False)),
        ):
            check(key, getattr(self, key))
        if self.ramp_fraction + self.freeze_fraction > 1.0:
            raise PrunekitError(
                f"dpf: ramp_fraction + freeze_fraction must be <= 1 (the target is reached "
                f"before the mask is fixed), got {self.ramp_fraction} + {self.freeze_fraction}"
            )
        check_weight_scores("dpf", run)


@objective("dpf", DPFOptions)
def dpf(o: DPFOptions, run: RunFacts) -> DPFObjective:
    """Dense weights trained with the pruned model's gradient, masks recomputed from
    them every ``period`` steps on a cubic ramp (Lin et al. 2020)."""
    return DPFObjective(o, run)


register(
    Method(
        "dpf",
        criterion="magnitude",
        objective="dpf",
        regularize_fraction=WINDOW,
        description="Dynamic pruning with feedback (Lin et al. 2020): forward with W ⊙ M, "
        "the gradient applied to the dense W, M recomputed from |W| every period steps on "
        "a cubic ramp, so pruned weights can come back; the mask is fixed at the end.",
    )
)
describe(
    "dpf",
    MethodDoc(
        "Dynamic pruning with feedback (DPF)",
        r"W_{t+1} = W_t - \eta_t\,\nabla L(W_t \odot M_t),\quad "
        r"M_t = \big[\,|W_t| \ge \tau_t\,\big],\quad "
        r"s_t = s_f\Big(1 - \big(1 - \min\big(\tfrac{t}{T},\,1\big)\big)^3\Big)",
        {
            "W_t": "the dense weights, all of them trained (pruned ones included)",
            "M_t": "the mask, recomputed from |W_t| every `period` steps (global magnitude)",
            r"\tau_t": "the threshold that prunes a fraction s_t of the weights",
            r"\nabla L(W_t \odot M_t)": "the gradient of the pruned model: the feedback "
            "that lets a wrongly pruned weight grow back",
            "T": "the ramp length (`ramp_fraction` of the phase); the mask is fixed for "
            "the last `freeze_fraction` of the phase and at its end",
            "s_f": "the target sparsity",
        },
        "Lin, Stich, Barba, Dmitriev & Jaggi 2020, Dynamic Model Pruning with Feedback (ICLR 2020)",
        "https://arxiv.org/abs/2006.07253",
        "When a gradual schedule's early cuts are the problem: pruned weights keep "
        "training and can re-enter the mask, at the cost of one dense copy of the pruned "
        "layers' weights during the phase. Needs the loop's optimizer (Pruner(..., "
        "optimizer=opt)). See the measured results below for how it compares with gmp at "
        "the same budget.",
    ),
)

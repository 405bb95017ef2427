"""AC/DC, alternating compressed / decompressed training (Peste, Iofinova, Vladu &
Alistarh, NeurIPS 2021, "AC/DC: Alternating Compressed/DeCompressed Training of Deep
Neural Networks", https://arxiv.org/abs/2106.12379).

The phase alternates sparse and dense sub-phases of ``L`` steps each, starting sparse
(the model arrives dense-trained: the paper's dense warm-up), and ends with a longer
sparse sub-phase of ``F`` steps::

    sparse: M = top_k(|W|) at the target, recomputed at the start of every sparse
            sub-phase; trained as W ⊙ M (pruned weights re-zeroed after each step)
    dense:  every weight trains; the pruned ones restart from 0

    [sparse L][dense L] ... [sparse L][dense L][sparse F]

A weight cut at one sparse sub-phase can regain magnitude in the next dense one and
survive the next cut: the dense sub-phases repair bad pruning decisions, the sparse ones
teach the kept weights to work alone. The number of pairs is the largest that fits
``(1 - final_fraction)`` of the window; what is left goes to the final sparse sub-phase.
The mask uses the method's criterion and scope (global magnitude by default).

As for DPF (``dpf.py``), the window is the whole phase but its last step; at its end the
one-shot event fixes the mask of the final sparse sub-phase (the parameters hold
``W ⊙ M`` then, so the event keeps ``M``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...registry import PrunekitError
from ..masks import original
from ..methods import Method
from ..options import Options, RunFacts, option
from . import Objective, objective
from .dpf import WINDOW, check_weight_scores, weight_masks


def acdc_plan(window: int, phase_fraction: float, final_fraction: float) -> tuple[int, int]:
    """``(L, final_start)``: sub-phase length and the step the final sparse sub-phase
    starts at, for a window of ``window`` steps."""
    length = max(int(round(phase_fraction * window)), 1)
    pairs = max(int((1.0 - final_fraction) * window) // (2 * length), 0)
    return length, 2 * length * pairs


class ACDCObjective(Objective):
    name = "acdc"

    def __init__(self, o: ACDCOptions, run: RunFacts) -> None:
        self.o = o
        self.target = float(run.target_sparsity or 0.0)
        self.criterion, self.scope = run.criterion, run.scope
        self.window = run.window_steps or 1
        self.length, self.final_start = acdc_plan(self.window, o.phase_fraction, o.final_fraction)
        self.modules: dict[str, nn.Module] = {}
        self.keep: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.cuts = 0  # masks computed (one per sparse sub-phase)
        self.revived = 0  # weights kept by a cut that the previous cut had pruned

    def state(self, u: int) -> tuple[bool, bool]:
        """``(sparse, starts)`` of the step taken after ``u`` steps."""
        if u >= self.final_start:
            return True, u == self.final_start
        r = u % (2 * self.length)
        return r < self.length, r == 0

    @torch.no_grad()
    def attach(self, model: nn.Module, modules: dict[str, nn.Module]) -> None:
        self.modules = dict(modules)
        self._cut(model)

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        self.steps += 1
        sparse, starts = self.state(self.steps)
        if sparse and starts:
            self._cut(model)
        elif sparse:
            self._mask()

    def _cut(self, model: nn.Module) -> None:
        before = self.keep
        self.keep = weight_masks(model, self.modules, self.target, self.criterion, self.scope)
        if before:
            self.revived += sum(int((self.keep[n] & ~before[n]).sum()) for n in before)
        self.cuts += 1
        self._mask()

    def _mask(self) -> None:
        for name, m in self.modules.items():
            original(m).mul_(self.keep[name])

    def detach(self, model: nn.Module) -> None:
        self.keep, self.modules = {}, {}

    def report(self) -> dict[str, object]:
        return {"objective": self.describe(), "cuts": self.cuts, "revived_weights": self.revived}

    def describe(self) -> str:
        return (
            f"acdc phase_fraction={self.o.phase_fraction:g} "
            f"final_fraction={self.o.final_fraction:g} ({self.criterion}, {self.scope})"
        )


def _fraction(key: str, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise PrunekitError(f"acdc: {key} must be in (0, 1), got {value}")
    return value


@dataclass(frozen=True)
class ACDCOptions(Options):
    phase_fraction: float = option(
        0.1, "length of each sparse and dense sub-phase, as a fraction of the phase", _fraction
    )
    final_fraction: float = option(
        0.3, "length of the final sparse sub-phase, as a fraction of the phase", _fraction
    )

    def validate(self, run: RunFacts) -> None:
        _fraction("phase_fraction", self.phase_fraction)
        _fraction("final_fraction", self.final_fraction)
        check_weight_scores("acdc", run)


@objective("acdc", ACDCOptions)
def acdc(o: ACDCOptions, run: RunFacts) -> ACDCObjective:
    """Sparse and dense sub-phases in turn, a final sparse one (Peste et al. 2021)."""
    return ACDCObjective(o, run)


#: AC/DC as a method for ``Pruner`` / ``pipeline.sparsify`` (``Pruner(model, ACDC, 0.98,
#: steps, optimizer=opt)``). Not registered in ``METHODS``: on LeNet-300-100 it ended
#: below gmp (``benchmarks/results/beat_peer_lenet300_dpf_explore_seed0.md``), and the
#: default comparison runs every registered method.
ACDC = Method(
    "acdc",
    criterion="magnitude",
    objective="acdc",
    regularize_fraction=WINDOW,
    description="AC/DC (Peste et al. 2021): sparse (global magnitude, re-cut each time) "
    "and dense sub-phases in turn, ending with a longer sparse one; pruned weights "
    "come back during the dense sub-phases.",
)

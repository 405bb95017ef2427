"""``l0-gate`` criterion: score = the keep probability ``P(z != 0)`` of each L0 gate
(``-o gate_score=test``: the test-time gate ``z_test``, ties broken by ``P``). Needs the
live ``l0`` objective (``objectives/l0.py``), which the pruning phase hands over in
``ctx.objective``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import Tensor, nn

from ...registry import PrunekitError
from ..objectives.l0 import L0Objective
from ..options import Options, option
from . import Context, criterion


@dataclass(frozen=True)
class L0GateOptions(Options):
    gate_score: str = option("prob", "'prob': P(z != 0); 'test': the test-time gate z_test")


@criterion("l0-gate", L0GateOptions)
def l0_gate(model: nn.Module, modules: dict[str, nn.Module], ctx: Context) -> dict[str, Tensor]:
    """Score = ``P(z != 0)`` of each gate (``-o gate_score=test``: the test-time gate
    ``z_test``, ties broken by ``P``). Weight-shaped for weight gates, shape ``(out,)``
    for neuron gates. Needs the live ``l0`` objective (the pruning phase provides it)."""
    obj = ctx.objective
    if not isinstance(obj, L0Objective) or not obj.log_alpha:
        raise PrunekitError(
            "criterion 'l0-gate' needs the l0 objective's gates; use the "
            "l0 method through prunekit.run / `prunekit prune`"
        )
    missing = [n for n in modules if n not in obj.log_alpha]
    if missing:
        raise PrunekitError(f"criterion 'l0-gate': no gates on layer(s) {missing}")
    obj.check_alive()
    if obj.target is not None and obj.num_gates and obj.density > 2.0 * (1.0 - obj.target) + 0.05:
        # Too short a window: the cut, not the gates, then decides (LeNet-5 with a 59-step
        # window ended at 83 % kept for a 2 % target and lost 20 points in an earlier benchmark
        # run; with a 4-epoch phase the gates keep 2.7-3.0 %, sparse_optimization.md).
        warnings.warn(
            f"l0: after {obj.steps} regularized steps the gates keep {obj.density:.1%} "
            f"(target {1.0 - obj.target:.1%}); the cut to the target is mostly blind. "
            "Lengthen the phase (--finetune-epochs) or raise -o gate_lr",
            stacklevel=3,  # the caller of prune_step, past Part.__call__
        )
    kind = L0GateOptions.parse(ctx.options, "criterion 'l0-gate'").gate_score
    if kind not in ("prob", "test"):
        raise PrunekitError(f"gate_score must be 'prob' or 'test', got {kind!r}")
    probs = obj.keep_probabilities()
    if kind == "prob":
        return {n: probs[n] for n in modules}
    # z_test saturates at 0 and 1; P(z != 0) (< 1) orders the ties.
    tests = obj.test_gates()
    return {n: tests[n] + 1e-3 * probs[n] for n in modules}

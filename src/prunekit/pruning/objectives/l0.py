"""L0 regularization with hard-concrete gates (Louizos, Welling & Kingma 2018,
"Learning Sparse Neural Networks through L0 Regularization"): the objective and its
controller.

Each gated unit j (one weight under the ``weight`` granularity, one output unit --
Linear row / conv filter, its bias included -- under ``neuron``) gets a logit
``log_alpha_j`` and a stochastic gate ``z_j`` (``hard_concrete.py``) that multiplies it
during training (``l0_gates.py``, fused nodes in ``l0_autograd.py``)::

    L = L_task + lam * sum_j P(z_j != 0)                  (expected L0 norm)

The ``l0-gate`` criterion (``criteria/l0_gate.py``) then prunes by ``P(z_j != 0)``.

Design choices (and why):

- **Gate optimizer.** The logits are not model parameters (the saved model stays a
  plain model); ``param_groups()`` hands them to the training loop's optimizer as one
  extra group (lr ``gate_lr``, no weight decay), so its learning-rate schedule,
  gradient clipping and checkpoints cover them like any parameter. ``before_step`` (the
  optimizer's step pre-hook) adds the closed-form penalty gradient and hands the
  optimizer Adam's direction ``m_hat / (sqrt(v_hat) + eps)`` of that gradient rather
  than the gradient itself: Louizos et al. trained with Adam, and a plain gradient step
  ``lr * lam * sigmoid'(.)`` vanishes for the strongly open gates a pre-trained network
  starts with, so no fixed gate lr would work for both 266k weight gates and 400 unit
  gates. Stepped by SGD (the group sets momentum 0) this is exactly Adam
  at lr ``gate_lr``; under Adam it is Adam on a normalized gradient, again about
  ``gate_lr`` per step.
- **Initialization.** A pruning run starts from a trained dense model, so gates start
  almost always fully open: ``log_alpha = log(1 - p) - log(p)`` with drop rate
  ``p = init_drop`` (default 0.05: ``log_alpha = 2.94``, ``z_test = 0.99``, 87 % of
  training samples exactly 1), rather than the paper's p = 0.5 for training from scratch.
- **Target-sparsity mode** (default: the run's ``--sparsity``). ``lam`` is then the
  *initial* value of a multiplier that a controller adjusts after every step:
  ``lam <- lam * exp(rate * log(rho / d_t))`` (clipped to [1e-8, 1e4]), where
  ``rho = mean_j P(z_j != 0)`` is the expected kept fraction and ``d_t`` anneals
  linearly from 1 to ``1 - sparsity`` over the first ``anneal`` of the regularization
  window, then stays there. Too many gates open -> lam grows, too few -> it shrinks
  (a multiplicative dual-ascent step on the constraint ``rho <= d``). The pruning
  event then removes exactly the target fraction with the ``l0-gate`` criterion.
  With ``target_sparsity=None`` (``-o target_sparsity=null``) lam is fixed, as written.
- **Folding.** ``detach`` (right after the pruning event) multiplies ``weight_orig``
  (and, for neuron gates, ``bias_orig``) by ``z_test`` and removes every hook and gate,
  leaving a plain masked model. The *mask* is the pruning event's (exactly the target);
  a kept entry whose ``z_test`` is 0 is not masked, it starts fine-tuning at 0.
- **Everything pruned.** A layer whose every gate is closed (``z_test == 0``, i.e.
  ``log_alpha <= logit(-gamma / (zeta - gamma)) = -2.40``) is an error naming the layer
  and lam, checked every ``check_every`` steps and at the pruning event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...registry import PrunekitError
from ..granularity import get as get_granularity
from ..granularity import regularizable
from ..method_docs import MethodDoc, describe
from ..methods import Method, register
from ..options import Options, RunFacts, option
from . import Objective, objective
from .hard_concrete import BETA, GAMMA, ZETA
from .l0_gates import HardConcreteGates, NoisePool


class L0Objective(HardConcreteGates, Objective):
    """Hard-concrete gates per weight (``granularity="weight"``) or per output unit
    (``"neuron"``); see the module docstring for the formulas and choices."""

    name = "l0"

    def __init__(
        self,
        *,
        lam: float | None,
        granularity: str,
        target_sparsity: float | None,
        from_run: bool = False,
        gate_lr: float,
        init_drop: float,
        rate: float,
        anneal: float,
        seed: int,
        check_every: int,
        window_steps: int | None = None,
        noise_pool: bool = True,
        beta: float = BETA,
        gamma: float = GAMMA,
        zeta: float = ZETA,
    ) -> None:
        # The user's values were checked by L0Options.validate (the factory's boundary).
        form = get_granularity(granularity).regularized_as
        # from_run without a run target: built bare (outside a run); attach refuses it
        self._pending = from_run and target_sparsity is None
        if self._pending:
            target_sparsity = 0.0
        if not (beta > 0 and gamma < 0 and zeta > 1):
            raise PrunekitError(
                f"l0: need beta > 0, gamma < 0, zeta > 1; got {beta}, {gamma}, {zeta}"
            )
        self.lam = None if lam is None else float(lam)  # target mode: None = auto-initialized
        self.sign = 1.0  # target mode: +1 closes gates, -1 opens them
        self._error = 0.0
        self.granularity = granularity
        self.unit_gates = form == "unit"
        self.target = None if target_sparsity is None else float(target_sparsity)
        self.gate_lr, self.init_drop = float(gate_lr), float(init_drop)
        self.rate, self.anneal, self.check_every = float(rate), float(anneal), int(check_every)
        self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.log_alpha: dict[str, Tensor] = {}
        self.modules: dict[str, nn.Module] = {}
        self._hooks: list[Any] = []
        self.steps = 0
        self.noise_pool = bool(noise_pool)
        self.pool: NoisePool | None = None
        self._probs: dict[str, Tensor] = {}
        self._ones_version: dict[str, int] = {}
        self._parked: dict[str, tuple[int, Any]] = {}
        self._moments: dict[str, tuple[Tensor, Tensor]] = {}  # see _normalize_grads
        self._moment_steps = 0
        self.window = window_steps  # steps of the regularization window (from the phase)
        self.density = 1.0
        self.trace: list[dict[str, float]] = []

    @property
    def coef(self) -> float:
        """The multiplier of ``sum_j P(z_j != 0)`` in the loss now (signed in target mode)."""
        return self.sign * (self.lam or 0.0)

    def penalty(self, model: nn.Module) -> Tensor | None:
        """``coef * sum_j P(z_j != 0)``. Its gradient ``coef * P(1 - P)`` w.r.t. each logit
        is added in closed form in ``before_step`` (no autograd graph over every gate), so
        the returned value is detached."""
        shift = self.beta * math.log(-self.gamma / self.zeta)
        with torch.no_grad():  # keep_probability, into buffers kept across steps
            for n, la in self.log_alpha.items():
                buf = self._probs.get(n)
                if buf is None or buf.shape != la.shape:
                    buf = self._probs[n] = torch.empty_like(la, requires_grad=False)
                torch.sub(la, shift, out=buf).sigmoid_()
            expected = sum(float(p.sum()) for p in self._probs.values())
        self.density = expected / self.num_gates
        return torch.tensor(self.coef * expected) if self.coef != 0.0 else None

    @torch.no_grad()
    def before_step(self, model: nn.Module) -> None:
        """Right before the optimizer step: the penalty's gradient ``coef * P(1 - P)``
        joins the task gradient of each logit (and lambda is auto-initialized)."""
        for la in self.log_alpha.values():
            if la.grad is None:
                la.grad = torch.zeros_like(la)
        if self.lam is None:  # auto: start where the penalty matches the task's pull
            task = sum(float(la.grad.abs().sum()) for la in self.log_alpha.values())
            slope = sum(float((p * (1 - p)).sum()) for p in self._probs.values())
            self.lam = task / max(slope, 1e-12)
        coef = self.coef
        if coef != 0.0:
            for n, la in self.log_alpha.items():
                p = self._probs[n]
                la.grad.add_(p, alpha=coef).addcmul_(p, p, value=-coef)  # coef * P(1-P)
        self._normalize_grads()

    def after_step(self, model: nn.Module, lr: float) -> None:
        """After the optimizer stepped the logits: the lambda controller and checks."""
        self.steps += 1
        if self.target is not None:
            self._control(self.density - self.density_target(self.steps))
        if self.steps % 10 == 0 or self.steps == 1:  # ~40 points an epoch: the report's curve
            self.trace.append({"step": self.steps, "lambda": self.coef, "density": self.density})
        if self.check_every and self.steps % self.check_every == 0:
            self.check_alive()

    def _control(self, error: float) -> None:
        """Sign-adaptive multiplier (Rprop-like): push gates shut while too many are open
        (``error = rho - d_t > 0``), open while too few; the magnitude grows by ``rate`` per
        step while the error keeps its sign and halves when it flips (damping)."""
        assert self.lam is not None
        if error * self._error > 0:
            self.lam = min(self.lam * (1.0 + self.rate), 1e4)
        elif error * self._error < 0:
            self.lam = max(self.lam * 0.5, 1e-12)
        self.sign = 1.0 if error > 0 else -1.0
        self._error = error

    def density_target(self, step: int) -> float:
        """``d_t``: 1 -> 1 - target linearly over ``anneal`` of the window, then flat."""
        assert self.target is not None
        final = 1.0 - self.target
        span = self.anneal * (self.window or 1)
        return 1.0 + (final - 1.0) * min(step / max(span, 1.0), 1.0)

    def check_alive(self) -> None:
        """Error if a layer has no open gate left (a silent empty layer otherwise)."""
        for name, z in self.test_gates().items():
            if not bool((z > 0).any()):
                raise PrunekitError(
                    f"l0 lambda={self.coef:.3g} closed every gate of layer {name!r} after "
                    f"{self.steps} steps (the layer would be pruned entirely); lower --lambda"
                    + (" or the target sparsity" if self.target is not None else "")
                )

    def describe(self) -> str:
        mode = f"target_sparsity={self.target:g}" if self.target is not None else "fixed lambda"
        lam = "auto" if self.lam is None else f"{self.coef:.4g}"
        return f"l0 lambda={lam} ({mode}, {self.granularity} gates, gate_lr={self.gate_lr:g})"

    def report(self) -> dict[str, Any]:
        """Lambda and expected kept fraction over the window (every 10 steps), and the
        keep-probability histogram at the pruning event."""
        out: dict[str, Any] = {"objective": self.describe(), "trace": self.trace}
        out.update(getattr(self, "final", {}))
        return out


@dataclass(frozen=True)
class L0Options(Options):
    lam: float | None = option(
        None, "initial multiplier (target mode, None: auto) or the fixed lambda"
    )
    target_sparsity: float | None = option(
        None,
        "kept fraction the controller steers to: default the run's --sparsity; "
        "null: lambda stays fixed (then --lambda is required)",
    )
    gate_lr: float = option(0.05, "learning rate of the gates' param group (Adam-normalized steps)")
    init_drop: float = option(0.05, "initial drop rate p of every gate")
    rate: float = option(0.02, "growth per step of the controller's multiplier")
    anneal: float = option(0.6, "fraction of the window over which d_t anneals to 1 - s")
    seed: int = option(0, "seed of the gates' noise")
    check_every: int = option(50, "steps between checks that a layer keeps an open gate")
    noise_pool: bool = option(True, "serve the logistic noise from a pool (see NoisePool)")

    def validate(self, run: RunFacts) -> None:
        lam, from_run = self.lam, not self.given("target_sparsity")
        target = run.target_sparsity if from_run else self.target_sparsity
        if lam is not None and not float(lam) >= 0.0:
            raise PrunekitError(f"l0: lambda must be >= 0, got {lam}")
        if lam is None and target is None and not from_run:
            raise PrunekitError("l0 with a fixed lambda (target_sparsity=null) needs --lambda")
        if get_granularity(run.granularity).regularized_as is None:
            known = " or ".join(repr(n) for n in regularizable())
            raise PrunekitError(f"l0: gates exist per {known} unit, not {run.granularity!r}")
        if target is not None and not 0.0 <= float(target) < 1.0:
            raise PrunekitError(f"l0: target_sparsity must be in [0, 1), got {target}")
        if not 0.0 < float(self.init_drop) < 1.0:
            raise PrunekitError(f"l0: init_drop must be in (0, 1), got {self.init_drop}")
        gate_lr, rate, anneal = self.gate_lr, self.rate, self.anneal
        if not float(gate_lr) > 0.0 or not float(rate) >= 0.0 or not 0.0 < float(anneal) <= 1.0:
            raise PrunekitError(
                f"l0: need gate_lr > 0, rate >= 0, anneal in (0, 1]; got "
                f"{gate_lr}, {rate}, {anneal}"
            )


@objective("l0", L0Options)
def l0(o: L0Options, run: RunFacts) -> L0Objective:
    """L0 term ``lam * sum_j P(z_j != 0)`` over hard-concrete gates (Louizos et al. 2018).

    The run gives the granularity (weight or unit gates), the window length and the
    target sparsity, unless ``target_sparsity`` is set (``None``: ``lam`` stays fixed,
    then it is required)."""
    given = o.given("target_sparsity")
    return L0Objective(
        lam=o.lam,
        granularity=run.granularity,
        target_sparsity=o.target_sparsity if given else run.target_sparsity,
        from_run=not given,
        gate_lr=o.gate_lr,
        init_drop=o.init_drop,
        rate=o.rate,
        anneal=o.anneal,
        seed=o.seed,
        check_every=o.check_every,
        window_steps=run.window_steps,
        noise_pool=o.noise_pool,
    )


register(
    Method(
        "l0",
        criterion="l0-gate",
        objective="l0",
        description="L0 regularization with hard-concrete gates (Louizos et al. 2018): lambda "
        "driven to the target sparsity, prune by P(z != 0), fold gates, fine-tune.",
    )
)
register(
    Method(
        "l0-neuron",
        criterion="l0-gate",
        granularity="neuron",
        objective="l0",
        description="L0 with one hard-concrete gate per neuron / filter: units whose gates "
        "close are removed whole (= l0 --granularity neuron).",
    )
)

_L0_FORMULA = (
    r"L = L_{task}\big(\theta \odot z\big) + \lambda \sum_j "
    r"\sigma\Big(\log\alpha_j - \beta \log\frac{-\gamma}{\zeta}\Big),"
    r"\quad z_j = \min\big(1, \max(0, \bar s_j)\big)"
)
_L0_SYMBOLS = {
    r"z_j": "the hard-concrete gate of unit j, exactly 0 or 1 with positive probability",
    r"\bar s_j": "a stretched concrete sample: sigmoid((log u - log(1-u) + log alpha_j) / beta) "
    "* (zeta - gamma) + gamma, u ~ U(0, 1)",
    r"\log\alpha_j": "the gate's learned logit (stepped by the training loop's optimizer)",
    r"\sigma(\cdot)": "the logistic function; the sum is the expected number of open gates",
    r"\beta, \gamma, \zeta": "2/3, -0.1, 1.1 (the paper's values)",
    r"\lambda": "penalty strength; by default steered after each step so that the expected "
    "kept fraction reaches 1 - sparsity",
}
_L0_PAPER = (
    "Louizos, Welling & Kingma 2018, Learning Sparse Neural Networks through L0 Regularization"
)
describe(
    "l0",
    MethodDoc(
        "L0 regularization (hard-concrete gates, per weight)",
        _L0_FORMULA,
        {**_L0_SYMBOLS, "j": "one weight"},
        _L0_PAPER,
        "https://arxiv.org/abs/1712.01312",
        "When you want the closest differentiable stand-in for counting nonzeros: the "
        "gates learn which weights to drop during training. It costs more per step than "
        "plain fine-tuning (gate sampling and a second optimizer).",
    ),
)
describe(
    "l0-neuron",
    MethodDoc(
        "L0 regularization (hard-concrete gates, per neuron)",
        _L0_FORMULA,
        {**_L0_SYMBOLS, "j": "one output unit (Linear row or conv filter, bias included)"},
        _L0_PAPER,
        "https://arxiv.org/abs/1712.01312",
        "When you want training to choose which whole units to remove, so the result is "
        "physically smaller and faster, and the per-layer widths are learned rather than "
        "fixed per layer.",
    ),
)

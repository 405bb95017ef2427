"""L1-regularized pruning (spec §1): ``L = L_task + lam * sum_j |theta_j|``, then the
smallest-magnitude weights are pruned to the target and the model is fine-tuned.

Two forms, over the prunable layers' weights (biases are not penalized):

- ``weight`` granularity (lasso):  ``lam * sum_j |theta_j|``
- ``neuron`` granularity (group lasso, Yuan & Lin 2006; for units Wen et al. 2016):
  ``lam * sum_g sqrt(n_g) * ||theta_g||_2`` with one group per output unit (Linear row,
  conv filter) of ``n_g`` weights. The ``sqrt(n_g)`` weighting is the standard one: it
  makes the penalty of a group of i.i.d. weights scale like its L1 norm, so layers of
  different fan-in are penalized alike. The pruning event then ranks units by their
  mean ``|theta|`` (the ``magnitude`` criterion reduced per unit).

Two updates (``update``):

- ``proximal`` (default): the penalty is not put into the loss; after every optimizer
  step with learning rate ``lr`` the weights are soft-thresholded (the proximal operator
  of ``lr * lam * |.|``)::

      theta <- sign(theta) * max(|theta| - lr * lam, 0)
      theta_g <- theta_g * max(0, 1 - lr * lam * sqrt(n_g) / ||theta_g||_2)   (group)

  on ``weight_orig`` (masks are left as they are, so masked entries stay masked; group
  norms are taken over the *effective* weights). This gives exact zeros.
- ``subgradient``: ``lam * sum |theta|`` is added to the loss and autograd uses
  ``sign(theta)`` (0 at 0). Weights then oscillate around 0 with amplitude ~``lr * lam``
  and are never exactly zero, so the final pruning step must cut them.

Why proximal is the default, measured (``benchmarks/results/sparse_optimization.md``,
"L1 update" table; LeNet-300-100 / Fashion-MNIST, 20 + 32 epochs, sparsify lr 0.1 with
lambda 1e-3, i.e. the defaults' lr * lambda = 1e-4, 2 seeds): the proximal update left
84-85 % of the weights *exactly* zero before the pruning event, the subgradient none,
and at 98 % sparsity it kept 88.33 % accuracy vs 86.37 % (90 %: 88.85 % vs 86.70 %).
The subgradient's lam * sign(w) term keeps kicking the small weights around 0 instead
of settling them there.

Everything pruned: if the regularization zeroes every weight of a layer (lambda far too
large), training stops with an error naming the layer and lambda (checked every
``check_every`` steps), instead of producing an empty model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...registry import PrunekitError
from ..granularity import get as get_granularity
from ..granularity import regularizable
from ..masks import effective, original, out_in
from ..method_docs import MethodDoc, describe
from ..methods import Method, register
from ..options import Options, RunFacts, option
from . import Objective, objective


def soft_threshold(w: Tensor, threshold: float) -> Tensor:
    """``sign(w) * max(|w| - threshold, 0)`` (the proximal operator of ``threshold * |.|``)."""
    return torch.sign(w) * torch.clamp(w.abs() - threshold, min=0.0)


def group_norms(w: Tensor) -> Tensor:
    """L2 norm of each output unit (row of a Linear, filter of a conv): shape ``(out,)``."""
    return w.flatten(1).norm(dim=1)


class L1Objective(Objective):
    """Lasso / group lasso with a proximal or subgradient update (see the module docstring)."""

    name = "l1"

    def __init__(
        self,
        lam: float,
        update: str,
        granularity: str,
        check_every: int,
        window_steps: int | None = None,
    ) -> None:
        # The values were checked by L1Options.validate (the factory's boundary).
        form = get_granularity(granularity).regularized_as
        self.lam, self.update, self.granularity = float(lam), update, granularity
        self.check_every = int(check_every)
        self.group = form == "unit"
        self.modules: dict[str, nn.Module] = {}
        self.steps = 0
        self._last_lr = 0.0
        self.window = window_steps
        self.zero_fraction: float | None = None

    def attach(self, model: nn.Module, modules: dict[str, nn.Module]) -> None:
        self.modules = dict(modules)

    def penalty(self, model: nn.Module) -> Tensor | None:
        if self.update != "subgradient" or self.lam == 0.0:
            return None
        terms = []
        for m in self.modules.values():
            w = out_in(m, effective(m))  # (out, in, *k): Conv1D's units are its columns
            if self.group:
                n_g = w[0].numel()
                terms.append(math.sqrt(n_g) * group_norms(w).sum())
            else:
                terms.append(w.abs().sum())
        return self.lam * torch.stack(terms).sum()

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        self.steps += 1
        self._last_lr = lr
        if self.update == "proximal" and self.lam > 0.0:
            t = lr * self.lam
            for m in self.modules.values():
                w = out_in(m, original(m))  # a view: writes reach the parameter
                if self.group:
                    norms = group_norms(out_in(m, effective(m)))
                    thr = t * math.sqrt(w[0].numel())
                    scale = torch.clamp(1.0 - thr / norms.clamp(min=1e-12), min=0.0)
                    w.mul_(scale.view(-1, *([1] * (w.dim() - 1))))
                else:
                    w.copy_(soft_threshold(w, t))
        if self.check_every and self.steps % self.check_every == 0:
            self.check_alive()
        if self.steps == self.window:  # the last regularized step: what did L1 zero?
            self.zero_fraction = self.exact_zero_fraction()

    def exact_zero_fraction(self) -> float:
        """Fraction of the regularized layers' effective weights that are exactly 0."""
        zeros = sum(int((effective(m) == 0).sum()) for m in self.modules.values())
        return zeros / max(sum(effective(m).numel() for m in self.modules.values()), 1)

    def report(self) -> dict[str, object]:
        """lambda, update, and the exact-zero fraction at the end of the window."""
        return {"objective": self.describe(), "zero_fraction_before_prune": self.zero_fraction}

    def check_alive(self) -> None:
        """Error if every weight of a layer is (about) zero: lambda has emptied it."""
        # The subgradient never reaches 0 exactly: it hovers within ~lr * lam of it.
        tol = self._last_lr * self.lam if self.update == "subgradient" else 0.0
        for name, m in self.modules.items():
            w = effective(m).detach()
            if not bool((w.abs() > tol).any()):
                raise PrunekitError(
                    f"l1 lambda={self.lam:g} ({self.update}) drove every weight of layer "
                    f"{name!r} to zero after {self.steps} steps; lower --lambda"
                )

    def detach(self, model: nn.Module) -> None:
        self.modules = {}

    def describe(self) -> str:
        form = "group lasso" if self.group else "lasso"
        return f"l1 lambda={self.lam:g} ({self.update}, {form})"


@dataclass(frozen=True)
class L1Options(Options):
    lam: float = option(1e-2, "penalty strength; the per-step threshold is lr * lam")
    update: str = option("proximal", "'proximal' (soft-threshold after each step) or 'subgradient'")
    check_every: int = option(50, "steps between checks that no layer was zeroed (0: never)")

    def validate(self, run: RunFacts) -> None:
        if not float(self.lam) >= 0.0:
            raise PrunekitError(f"l1: lambda must be >= 0, got {self.lam}")
        if self.update not in ("proximal", "subgradient"):
            raise PrunekitError(
                f"l1: update must be 'proximal' or 'subgradient', got {self.update!r}"
            )
        if get_granularity(run.granularity).regularized_as is None:
            known = " or ".join(repr(n) for n in regularizable())
            raise PrunekitError(f"l1: granularity must be {known}, got {run.granularity!r}")


@objective("l1", L1Options)
def l1(o: L1Options, run: RunFacts) -> L1Objective:
    """L1 term ``lam * sum |theta|`` (``granularity="neuron"``: group lasso per unit).

    Default ``lam = 1e-2``: with the default sparsify lr (0.01 for LeNet-300-100) it
    shrinks each weight by ``lr * lam = 1e-4`` per step; on LeNet-300-100 / Fashion-MNIST
    (tuning runs: 4 dense + 2 sparsify epochs, seed 0) it zeroed 77 % of the weights before
    the cut and gave 83.9 % at 98 % sparsity vs 82.6 % (3e-3) and 83.3 % (3e-2)
    (1e-5..3e-4 zeroed < 1 %: L1 then does nothing; 82.2 %). What matters is the per-step
    threshold ``lr * lam``: at another sparsify lr scale ``lam`` inversely (at lr 0.1 on
    LeNet-300-100, 20 + 16 epochs, 98 %, lam 1e-3 had the best validation accuracy of
    1e-2 / 3e-3 / 1e-3 / 3e-4; ``benchmarks/results/sparse_optimization_tuning.md``).

    The run gives the granularity (``neuron``: group lasso) and the window length."""
    return L1Objective(o.lam, o.update, run.granularity, o.check_every, run.window_steps)


register(
    Method(
        "l1",
        criterion="magnitude",
        objective="l1",
        description="L1-regularized training (lambda * sum |w|, proximal soft-threshold by "
        "default; group lasso for --granularity neuron), prune smallest |w|, fine-tune.",
    )
)
describe(
    "l1",
    MethodDoc(
        "L1 regularization (lasso, group lasso)",
        r"L = L_{task} + \lambda \sum_j |\theta_j|"
        r"\qquad \theta_j \leftarrow \operatorname{sign}(\theta_j)\max(|\theta_j| - \eta\lambda,\ 0)",
        {
            r"L_{task}": "the task loss (cross-entropy)",
            r"\theta_j": "a weight of a Linear/Conv layer (biases are not penalized)",
            r"\lambda": "penalty strength (`--lambda`)",
            r"\eta": "the learning rate: the proximal step soft-thresholds by eta * lambda "
            "after each optimizer step, giving exact zeros",
        },
        "Tibshirani 1996, Regression Shrinkage and Selection via the Lasso; for units "
        "(group lasso, --granularity neuron): Wen, Wu, Wang, Chen & Li 2016, Learning "
        "Structured Sparsity in Deep Neural Networks",
        "https://arxiv.org/abs/1608.03665",
        "When you want training itself to decide which weights are unimportant before the "
        "cut. It needs a lambda matched to the learning rate (the per-step threshold "
        "eta * lambda is what matters) and a regularization window in the budget.",
    ),
)

"""Knowledge distillation from the dense model while a pruned model fine-tunes.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"
(https://arxiv.org/abs/1503.02531). The training loss of the student (the model being
pruned) becomes

    L = CE(z_s, y) + alpha * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )

with z_s the student's logits, z_t the frozen teacher's (the dense model the run was
pruned from, in eval mode), T the temperature and alpha the weight of the soft term.
The T^2 factor keeps the soft term's gradient on the scale of the hard one when T
changes (Hinton et al., section 2).

It is a training callback of :func:`prunekit.training.fit` and so composes with every
method's phase (pruning events, objectives, noise transforms): the student's logits
are read by a forward hook on the model during the loop's own forward pass, and the
teacher sees the same (possibly transformed) batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .pruning.masks import clone
from .registry import PrunekitError


def distill_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, averaged over the batch."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    return t * t * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


class Distillation:
    """A ``fit`` callback adding ``alpha * T^2 * KL`` from a frozen copy of ``teacher``.

    Place it AFTER callbacks that transform the batch, so the teacher sees what the
    student sees.
    """

    def __init__(self, teacher: nn.Module, *, alpha: float = 1.0, temperature: float = 4.0):
        if alpha < 0 or temperature <= 0:
            raise PrunekitError(
                f"distillation needs alpha >= 0 and temperature > 0, got alpha={alpha}, "
                f"temperature={temperature}"
            )
        self.teacher = clone(teacher).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self._x: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        self._handle: Any = None

    def on_start(self, model: nn.Module) -> None:
        self._handle = model.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        if module.training:
            self._logits = output

    def transform(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._x = x
        return x, y

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if self._logits is None or self._x is None or self.alpha == 0:
            return None
        with torch.no_grad():
            teacher_logits = self.teacher(self._x)
        loss = self.alpha * distill_loss(self._logits, teacher_logits, self.temperature)
        self._logits = None
        return loss

    def on_end(self, model: nn.Module, steps: int) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._x = self._logits = None

    def describe(self) -> str:
        return f"distillation alpha={self.alpha:g} T={self.temperature:g}"

    def record(self) -> dict[str, float]:
        return {"alpha": self.alpha, "temperature": self.temperature}

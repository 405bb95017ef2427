"""Sparse (CSR) inference for highly sparse Linear layers, used only where it is faster.

A Linear layer computes ``y = x W^T + b``. With ``W`` stored in compressed sparse row
format (CSR: per row, the column indices and values of its nonzeros), ``SparseLinear``
computes ``y = (W_csr @ x^T)^T + b`` with PyTorch's sparse-dense matmul (MKL on x86
CPUs): the work is proportional to nnz(W) * batch instead of out * in * batch, but
each nonzero costs an index lookup and the memory access is irregular, so CSR only
pays at high sparsity and enough batch (see ``benchmarks/results/csr_linear.md``).

``to_sparse_inference`` therefore measures instead of guessing: for every Linear
layer at or above ``min_sparsity`` it times the dense layer and its CSR version on
the activation that reaches the layer for the example input, interleaved in the same
process (medians by default; ``interleaved_timer(stat="min")`` on a loaded machine),
and swaps in CSR only where CSR was faster.

This is an inference-time conversion of a copy of the model: the module holds no
trainable parameters (its forward runs under ``torch.no_grad()``; it also works under
``torch.inference_mode()``), and a run directory always stores the dense model
(``model.safetensors``): convert after ``prunekit.load``.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..evaluation.latency import interleaved_samples as _interleaved
from ..pruning.masks import clone, effective, finalize
from ..registry import PrunekitError

#: ``timer(dense_layer, csr_layer, x) -> (dense_ms, csr_ms)`` for the layer input ``x``.
Timer = Callable[[nn.Module, nn.Module, Tensor], tuple[float, float]]


class SparseLinear(nn.Module):
    """Inference-only ``y = x W^T + b`` with ``W`` in CSR (``torch.sparse_csr``).

    ``weight`` (CSR, shape ``(out_features, in_features)``) and ``bias`` are buffers,
    so ``.to(device)`` moves them. Inputs of shape ``(..., in_features)``.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise PrunekitError(f"SparseLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        dense = weight.detach().to_dense() if weight.layout != torch.strided else weight.detach()
        with warnings.catch_warnings():  # "CSR support is in beta": true, and not actionable
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            csr = dense.contiguous().to_sparse_csr()
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        """The CSR twin of a Linear layer (its effective weight: masks applied)."""
        bias = effective(linear, "bias") if linear.bias is not None else None
        return cls(effective(linear), bias)

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def forward(self, x: Tensor) -> Tensor:
        # no_grad: autograd through a CSR weight is not needed here, and F.linear with a
        # CSR weight fails under inference_mode; the plain sparse @ dense product does not.
        with torch.no_grad():
            flat = x.reshape(-1, self.in_features)
            out = (self.weight @ flat.T).T
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        total = self.in_features * self.out_features
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, density={self.nnz / total:.4f}"
        )


def weight_sparsity(linear: nn.Module) -> float:
    """Fraction of exactly-zero entries of a Linear layer's effective weight."""
    w = effective(linear)
    return float((w == 0).sum()) / w.numel()


def interleaved_samples(
    candidates: dict[str, Callable[[], object]],
    *,
    repeats: int = 30,
    warmup: int = 3,
    min_time_s: float = 5e-4,
    threads: int | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per call of each candidate, timed interleaved
    (:func:`prunekit.evaluation.latency.interleaved_samples`), with defaults for single
    layers: a sample loops the call for at least 0.5 ms (a forward takes microseconds)."""
    return _interleaved(
        candidates, repeats=repeats, warmup=warmup, min_time_s=min_time_s, threads=threads
    )


def interleaved_timer(
    repeats: int = 30,
    warmup: int = 3,
    min_time_s: float = 5e-4,
    threads: int | None = None,
    stat: str = "median",
) -> Timer:
    """The default timer: ``interleaved_samples`` of the dense and the CSR layer on the
    layer's real input; ``stat`` = ``"median"`` (typical time) or ``"min"`` (the
    least-disturbed time: the robust choice on a machine shared with other jobs)."""
    reduce = {"median": statistics.median, "min": min}
    if stat not in reduce:
        raise PrunekitError(f"stat must be 'median' or 'min', got {stat!r}")

    def timer(dense: nn.Module, csr: nn.Module, x: Tensor) -> tuple[float, float]:
        ms = interleaved_samples(
            {"dense": lambda: dense(x), "csr": lambda: csr(x)},
            repeats=repeats,
            warmup=warmup,
            min_time_s=min_time_s,
            threads=threads,
        )
        return reduce[stat](ms["dense"]), reduce[stat](ms["csr"])

    return timer


@dataclass(frozen=True)
class SparseDecision:
    """What ``to_sparse_inference`` did with one Linear layer, and why."""

    layer: str
    shape: tuple[int, int]  # (out_features, in_features)
    sparsity: float
    use_csr: bool
    dense_ms: float | None  # median ms per forward of the layer alone; None: not timed
    csr_ms: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layer_inputs(model: nn.Module, names: list[str], example_input: Tensor) -> dict[str, Tensor]:
    """The input each named layer receives on the example forward (first call)."""
    seen: dict[str, Tensor] = {}
    modules = dict(model.named_modules())
    handles = []
    for name in names:

        def hook(_m: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
            seen.setdefault(name, args[0].detach())

        handles.append(modules[name].register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def to_sparse_inference(
    model: nn.Module,
    example_input: Tensor,
    *,
    min_sparsity: float = 0.9,
    measure: bool | Timer = True,
    min_speedup: float = 1.0,
) -> tuple[nn.Module, list[SparseDecision]]:
    """A copy of ``model`` whose Linear layers with weight sparsity >= ``min_sparsity``
    are replaced by ``SparseLinear`` where CSR is measured faster.

    measure: ``True`` times each candidate with ``interleaved_timer()`` on the input the
    layer receives for ``example_input`` (so batch size matters: pass a batch of the size
    you will serve); a callable ``timer(dense, csr, x) -> (dense_ms, csr_ms)`` replaces
    the timer; ``False`` converts every candidate without timing.
    min_speedup: CSR is used when ``dense_ms / csr_ms >= min_speedup`` (and strictly
    faster). Returns ``(model_copy, decisions)``, one decision per Linear layer; the
    input model is left unchanged.
    """
    if not 0.0 <= min_sparsity <= 1.0:
        raise PrunekitError(f"min_sparsity must be in [0, 1], got {min_sparsity}")
    if min_speedup <= 0:
        raise PrunekitError(f"min_speedup must be > 0, got {min_speedup}")
    if not isinstance(example_input, Tensor):
        raise PrunekitError("to_sparse_inference needs an example input tensor")
    timer: Timer | None = interleaved_timer() if measure is True else (measure or None)
    out = finalize(clone(model))  # baked masks: the dense candidate is timed without hooks
    linears = {n: m for n, m in out.named_modules() if type(m) is nn.Linear}
    if not linears:
        raise PrunekitError(f"{type(model).__name__} has no Linear layers to make sparse")
    inputs = _layer_inputs(out, list(linears), example_input)
    decisions = []
    for name, linear in linears.items():
        sp = weight_sparsity(linear)
        shape = (linear.out_features, linear.in_features)
        dense_ms = csr_ms = None
        if sp < min_sparsity:
            use, reason = False, f"sparsity {sp:.4f} < min_sparsity {min_sparsity:g}"
        elif name not in inputs:
            use, reason = False, "not reached by the example input"
        else:
            csr = SparseLinear.from_linear(linear)
            if timer is None:
                use, reason = True, "measure=False: converted without timing"
            else:
                dense_ms, csr_ms = timer(linear, csr, inputs[name])
                use = csr_ms < dense_ms and dense_ms / csr_ms >= min_speedup
                reason = f"measured: dense {dense_ms:.4f} ms, csr {csr_ms:.4f} ms"
            if use:
                _set_module(out, name, csr)
        decisions.append(SparseDecision(name, shape, sp, use, dense_ms, csr_ms, reason))
    return out, decisions

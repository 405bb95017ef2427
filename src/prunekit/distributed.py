"""Data-parallel training under ``torchrun`` (``torch.distributed`` + DDP).

``torchrun --nproc_per_node N -m prunekit prune ...`` starts N processes and describes
the group in environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). ``training.fit`` joins the group on its first call
(backend ``gloo`` for a CPU model, ``nccl`` for a CUDA one) and trains through a
:class:`DataParallel`:

- **Sharding.** Every rank draws the *same* globally shuffled batch of ``B`` examples
  (same seed, same generator) and runs the callbacks' batch transforms on all of it,
  then keeps its contiguous slice ``r`` of ``torch.tensor_split(batch, N)``.
- **Loss scaling.** Rank ``r`` back-propagates ``N / B * sum_{i in slice r} CE_i``
  (+ the penalty); DDP averages gradients over the N ranks, which gives
  ``1 / B * sum_i grad CE_i``, the gradient of the global batch's mean loss -- also for
  a last batch smaller than ``B`` whose slices are unequal. So an N-process run with
  global batch ``B`` takes the same optimizer steps as a 1-process run with batch ``B``,
  up to floating-point summation order.
- **Non-model tensors** trained by a callback (e.g. L0 gate logits, which are not model
  parameters) are listed by the callback's ``synced_tensors()``; their gradients are
  averaged across ranks after each backward, like DDP does for the parameters.
- **Reported loss** is the mean over ranks of the scaled local losses, i.e. exactly the
  global batch's loss, and every rank sees the same value (so a non-finite loss stops
  every rank at the same step instead of leaving the others waiting).
- **Masks** are decided on every rank from identical weights, then broadcast from rank 0
  after each pruning event (:func:`broadcast_masks`); :func:`check_in_sync` verifies at
  the end of training that parameters, masks and synced tensors are bit-identical.
- Only rank 0 writes files and prints (:func:`is_main`).

Limits: an objective whose penalty depends on the batch's activations (the entropy
objectives) sees each rank's slice, so its gradient is the mean over slices, not over
the whole batch; BatchNorm statistics are per rank (DDP broadcasts rank 0's buffers).
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .pruning.masks import broadcast_masks
from .registry import PrunekitError

__all__ = ["broadcast_masks"]  # defined next to the masks it syncs; kept importable here

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else int(value)
    except ValueError:
        raise PrunekitError(
            f"environment variable {name}={value!r} is not a whole number"
        ) from None


def world_size() -> int:
    """Processes in the group (``WORLD_SIZE`` from torchrun; 1 without it)."""
    return dist.get_world_size() if dist.is_initialized() else max(_env_int("WORLD_SIZE", 1), 1)


def rank() -> int:
    """This process's rank (``RANK`` from torchrun; 0 without it)."""
    return dist.get_rank() if dist.is_initialized() else _env_int("RANK", 0)


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or a plain run)."""
    return rank() == 0


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def init(device: torch.device | None = None, *, timeout_s: float = 600.0) -> int:
    """Join the process group torchrun describes; returns the world size (1: nothing to do).

    Backend ``nccl`` when ``device`` is a CUDA device (``LOCAL_RANK`` selects the GPU),
    else ``gloo``. Idempotent.
    """
    if dist.is_initialized():
        return dist.get_world_size()
    size = world_size()
    if size <= 1:
        return 1
    missing = [k for k in _ENV if not os.environ.get(k)]
    if missing:
        raise PrunekitError(
            f"WORLD_SIZE={size} but {', '.join(missing)} not set; "
            "launch with torchrun --nproc_per_node N -m prunekit ..."
        )
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        rank=_env_int("RANK", 0),
        world_size=size,
        timeout=timedelta(seconds=timeout_s),
    )
    atexit.register(_shutdown)
    return size


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over the ranks (a copy; ``t`` itself in a single process)."""
    if world_size() <= 1 or not dist.is_initialized():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.div_(dist.get_world_size())


def _digest(t: torch.Tensor) -> int:
    """A signed 63-bit hash of the tensor's bytes (bit-exact comparison across ranks)."""
    data = t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def state_digests(model: nn.Module, extra: Sequence[torch.Tensor] = ()) -> dict[str, int]:
    """``{name: hash}`` of every parameter, buffer (masks included) and extra tensor."""
    out = {f"param {n}": _digest(p) for n, p in model.named_parameters()}
    out.update({f"buffer {n}": _digest(b) for n, b in model.named_buffers()})
    out.update({f"tensor {i}": _digest(t) for i, t in enumerate(extra)})
    return out


def check_in_sync(model: nn.Module, extra: Sequence[torch.Tensor] = ()) -> None:
    """Raise unless parameters, masks and ``extra`` are bit-identical on every rank."""
    if not dist.is_initialized() or dist.get_world_size() <= 1:
        return
    digests = state_digests(model, extra)
    nccl = dist.get_backend() == "nccl"  # nccl reduces CUDA tensors only
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    local = torch.tensor(list(digests.values()), dtype=torch.int64, device=device)
    # Same names on every rank (same model): equal hashes <=> max == min elementwise.
    hi, lo = local.clone(), local.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    differ = [name for name, a, b in zip(digests, hi.tolist(), lo.tolist(), strict=True) if a != b]
    if differ:
        raise PrunekitError(
            f"ranks disagree on {len(differ)} tensor(s) after training, first: "
            f"{differ[0]}; data-parallel training lost synchronization"
        )


class DataParallel:
    """The data-parallel side of ``training.fit``: a pass-through in a single process.

    ``loss(model, x, y)`` takes the *global* batch and returns the tensor to
    back-propagate (see the module docstring for the scaling).
    """

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        p = next(model.parameters(), None)
        self.device = p.device if p is not None else torch.device("cpu")
        size = world_size()  # checked before joining the group: fails fast, on every rank
        if size > 1 and batch_size % size != 0:
            raise PrunekitError(
                f"batch size {batch_size} is not divisible by the world size {size} "
                f"(torchrun --nproc_per_node); use a multiple of {size}"
            )
        self.world = init(self.device)
        self.rank = rank() if self.world > 1 else 0
        self._wrapped: tuple[tuple[int, ...], nn.Module] | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    def replica(self, model: nn.Module) -> nn.Module:
        """The DDP wrapper of ``model``, rebuilt when its set of trainable parameters
        changes (an objective adding or removing modules). Masking keeps parameter
        identity (``weight_orig`` is the old ``weight`` object), so it needs no rebuild."""
        if not self.active:
            return model
        key = tuple(id(p) for p in model.parameters() if p.requires_grad)
        if self._wrapped is None or self._wrapped[0] != key:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._wrapped = (key, DistributedDataParallel(model, device_ids=ids))
        return self._wrapped[1]

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the global batch ``(x, y)``: the mean over it in a single
        process; this rank's scaled share ``N / B * sum(CE over its slice)`` under DDP."""
        x, y = x.to(self.device), y.to(self.device)
        if not self.active:
            return F.cross_entropy(model(x), y)
        n = x.shape[0]
        xs, ys = (
            torch.tensor_split(x, self.world)[self.rank],
            torch.tensor_split(y, self.world)[self.rank],
        )
        local = F.cross_entropy(self.replica(model)(xs), ys, reduction="sum")
        return local * (self.world / n)

    def sync_grads(self, tensors: Sequence[torch.Tensor]) -> None:
        """Average the gradients of tensors DDP does not manage (after backward)."""
        if not self.active:
            return
        for t in tensors:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
            dist.all_reduce(t.grad, op=dist.ReduceOp.SUM)
            t.grad.div_(self.world)

    def value(self, loss: torch.Tensor) -> float:
        """The global batch's loss as a float, identical on every rank."""
        return float(all_reduce_mean(loss.detach()).item()) if self.active else loss.item()

    @torch.no_grad()
    def finish(self, model: nn.Module, extra: Sequence[torch.Tensor] = ()) -> None:
        """After the last step: take rank 0's buffers (BatchNorm statistics were updated
        by each rank's own last slice; DDP broadcasts them only before a forward), then
        verify that parameters, buffers and ``extra`` are bit-identical on every rank."""
        if not self.active:
            return
        for buf in model.buffers():
            dist.broadcast(buf, 0)
        check_in_sync(model, extra)


def synced_tensors(callbacks: Sequence[Any]) -> list[torch.Tensor]:
    """Tensors the callbacks train outside the model (``synced_tensors()`` hook)."""
    return [t for cb in callbacks if hasattr(cb, "synced_tensors") for t in cb.synced_tensors()]

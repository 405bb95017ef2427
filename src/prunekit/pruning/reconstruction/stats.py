"""Streaming input statistics of one layer, accumulated batch by batch.

For inputs ``X`` (``in x N``, one column per input vector; here received as rows
``Xᵀ`` of shape ``(N, in)``) this keeps

- ``N``, the number of input vectors seen;
- ``sq_norms[j] = Σ_n X_jn²``, whose square root is Wanda's ``||X_j||_2`` (Sun et al.
  2023, "A Simple and Effective Pruning Approach for Large Language Models");
- ``xtx = Σ_n x_n x_nᵀ`` (``in x in``), from which SparseGPT's Hessian of the layer-wise
  squared error ``||W X - Ŵ X||²`` is ``H = 2 X Xᵀ`` (Frantar & Alistarh 2023,
  "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").

Sums rather than running means: they are exact for any split of the calibration set
into batches, so calibration streams in pieces of any size. ``hessian()`` returns the
mean ``2 X Xᵀ / N`` (the scale does not change the solution: damping is relative to
the mean diagonal) which keeps magnitudes independent of the calibration size.
"""

from __future__ import annotations

import torch


class InputStats:
    """Accumulates ``N``, ``Σ x²`` per input and optionally ``Σ x xᵀ`` of a layer's inputs.

    ``hessian=False`` skips the ``in x in`` matrix (Wanda needs only the norms).
    ``dtype`` is the accumulation type (float64 keeps large sums exact enough on CPU).
    """

    def __init__(
        self,
        columns: int,
        *,
        hessian: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.columns = int(columns)
        self.count = 0
        self.sq_norms = torch.zeros(self.columns, dtype=dtype, device=device)
        self.xtx = (
            torch.zeros(self.columns, self.columns, dtype=dtype, device=device) if hessian else None
        )

    @torch.no_grad()
    def update(self, rows: torch.Tensor) -> None:
        """Add a batch of input vectors ``rows`` of shape ``(N, in)``."""
        if rows.dim() != 2 or rows.shape[1] != self.columns:
            raise ValueError(
                f"expected inputs of shape (N, {self.columns}), got {tuple(rows.shape)}"
            )
        x = rows.to(self.sq_norms.dtype).to(self.sq_norms.device)
        self.count += x.shape[0]
        self.sq_norms += x.pow(2).sum(0)
        if self.xtx is not None:
            self.xtx += x.t() @ x

    def column_norms(self) -> torch.Tensor:
        """``||X_j||_2`` over every input vector seen (Wanda's activation norm)."""
        return self.sq_norms.sqrt()

    def hessian(self) -> torch.Tensor:
        """``H = 2 X Xᵀ / N`` (SparseGPT's layer Hessian, averaged over the inputs)."""
        if self.xtx is None:
            raise ValueError("these statistics were collected with hessian=False")
        if self.count == 0:
            raise ValueError("no inputs were seen: the Hessian is undefined")
        return 2.0 * self.xtx / self.count

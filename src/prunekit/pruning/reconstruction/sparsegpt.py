"""SparseGPT: one-shot pruning with optimal-brain-surgeon weight updates (Frantar &
Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
One-Shot", ICML, arXiv:2301.00774).

Per layer, minimise the reconstruction error ``||W X - Ŵ X||²`` over sparse ``Ŵ``,
row by row, with the shared Hessian ``H = 2 X Xᵀ`` of the inputs ``X``:

1. Dead inputs (``H_jj = 0``: input ``j`` is always zero on the calibration data)
   get ``H_jj = 1``: they are decoupled from the others, pruning them costs
   nothing (their saliency is set to 0, so they go first) and a kept one is left
   unchanged. Damping ``H += λ I`` with ``λ = percdamp · mean(diag H)`` makes ``H``
   well conditioned (retried with 10x the damping if Cholesky still fails).
2. ``U = chol(H⁻¹)ᵀ`` (upper Cholesky factor of the inverse): row ``j`` of ``U``,
   divided by ``U_jj``, is the OBS update direction once columns ``< j`` are fixed,
   and ``U_jj² = [H_F⁻¹]_jj`` for the remaining set ``F``.
3. Columns are processed left to right in blocks of ``blocksize`` (128). At the start
   of a block the mask of the block is chosen adaptively from the *current* weights:
   saliency ``w_ij² / U_jj²`` (the OBS error of removing ``w_ij``), the lowest
   ``k_b`` entries of the block are pruned. For N:M the choice is made every ``m``
   columns: the ``m - n`` lowest saliencies of each row's group.
4. Column ``j``: ``q = w ⊙ keep``, error ``e = (w - q) / U_jj``, the block's later
   columns get ``W[:, j:] -= e U[j, j:]``; after the block, the columns right of it
   get ``W[:, end:] -= E U[block, end:]`` (lazy batched updates).

Exact counts: the layer prunes ``round(s · numel)`` weights; block ``b`` prunes its
already-pruned (``forced``) entries plus its share of the rest, shared by cumulative
rounding in proportion to its free entries, so the per-layer count is exact.
"""

from __future__ import annotations

import torch

from .selection import check_nm, split_count, target_count


def _inverse_cholesky(h: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + λI)⁻¹``, increasing λ tenfold on failure."""
    mean_diag = torch.diag(h).mean()
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    damp = float(percdamp)
    for _ in range(6):
        try:
            lower = torch.linalg.cholesky(h + damp * mean_diag * eye)
            inv = torch.cholesky_inverse(lower)
            return torch.linalg.cholesky(inv, upper=True)
        except RuntimeError:  # torch.linalg.LinAlgError: not positive definite
            damp = max(damp * 10, 1e-6)
    raise ValueError("SparseGPT: the input Hessian is not positive definite even with damping")


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float | None = None,
    *,
    n: int | None = None,
    m: int | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    forced: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``W`` ``(out, in)`` with SparseGPT given ``H`` ``(in, in)``.

    ``sparsity`` (unstructured) or ``n``/``m`` (N:M: ``n`` kept of every ``m``
    consecutive inputs). ``forced`` (bool, like ``W``) marks entries that must be
    pruned (already pruned: they count towards the target). Returns
    ``(W', prune_mask)``: the updated weight (exactly zero where pruned, same dtype
    as ``W``) and the boolean mask of pruned entries.
    """
    rows, cols = weight.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"Hessian of shape {tuple(hessian.shape)} for {cols} inputs")
    nm = n is not None or m is not None
    if nm:
        n, m = check_nm(n or 0, m or 0)
        if cols % m:
            raise ValueError(f"N:M {n}:{m}: M={m} does not divide the input dimension {cols}")
        blocksize = max(m, blocksize - blocksize % m)
    dtype = hessian.dtype if hessian.dtype == torch.float64 else torch.float32
    w = weight.detach().to(dtype).contiguous().clone()  # a Conv1D weight arrives transposed
    h = hessian.detach().to(dtype).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    u = _inverse_cholesky(h, percdamp)
    forced = (
        torch.zeros(rows, cols, dtype=torch.bool, device=w.device)
        if forced is None
        else forced.to(device=w.device, dtype=torch.bool)
    )
    alive = (~dead).to(dtype).unsqueeze(0)
    minus_inf = torch.tensor(float("-inf"), dtype=dtype, device=w.device)

    starts = list(range(0, cols, blocksize))
    if not nm:
        blocks = torch.stack([forced[:, i : i + blocksize].sum() for i in starts]).cpu()
        sizes = torch.tensor([rows * min(blocksize, cols - i) for i in starts])
        shares = split_count(
            target_count(rows * cols, sparsity or 0.0) - int(blocks.sum()), sizes - blocks
        )
        counts = blocks + shares
    pruned = torch.zeros(rows, cols, dtype=torch.bool, device=w.device)
    for b, i1 in enumerate(starts):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        u1 = u[i1:i2, i1:i2]
        d = torch.diag(u1)
        err = torch.zeros_like(w1)
        mask1 = torch.zeros_like(w1, dtype=torch.bool)
        if not nm:
            sal = w1.pow(2) / d.pow(2).unsqueeze(0) * alive[:, i1:i2]
            sal = torch.where(forced[:, i1:i2], minus_inf, sal)
            k = int(counts[b])
            if k > 0:
                order = torch.sort(sal.flatten(), stable=True).indices[:k]
                mask1.view(-1)[order] = True
        for j in range(i2 - i1):
            if nm and j % m == 0:
                sal = w1[:, j : j + m].pow(2) / d[j : j + m].pow(2).unsqueeze(0)
                sal = sal * alive[:, i1 + j : i1 + j + m]
                sal = torch.where(forced[:, i1 + j : i1 + j + m], minus_inf, sal)
                order = torch.sort(sal, dim=1, stable=True).indices[:, : m - n]
                mask1[:, j : j + m].scatter_(1, order, True)
                mask1[:, j : j + m] |= forced[:, i1 + j : i1 + j + m]
            col = w1[:, j]
            q = torch.where(mask1[:, j], torch.zeros_like(col), col)
            e = (col - q) / d[j]
            w1[:, j:] -= e.unsqueeze(1) * u1[j, j:].unsqueeze(0)
            w1[:, j] = q
            err[:, j] = e
        w[:, i1:i2] = w1
        pruned[:, i1:i2] = mask1
        w[:, i2:] -= err @ u[i1:i2, i2:]
    w[pruned] = 0.0
    return w.to(weight.dtype), pruned

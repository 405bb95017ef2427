"""Layer-level reconstruction maths: 2-D views, streaming statistics, Wanda, SparseGPT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.pruning.reconstruction import (
    InputStats,
    from_2d,
    inputs_2d,
    nm_prune,
    sparsegpt_prune,
    split_count,
    to_2d,
    wanda_mask,
    wanda_scores,
    weight_2d,
)


class Conv1D(nn.Module):
    """Stand-in with the layout of transformers' Conv1D: weight (in, out), x @ W + b."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.randn(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def _as_rows(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Layer output as (N, out) rows, matching inputs_2d's row order."""
    if y.dim() == 4:
        return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
    if y.dim() == 3 and isinstance(module, nn.Conv1d):
        return y.permute(0, 2, 1).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


@pytest.mark.parametrize(
    "module, x",
    [
        (nn.Linear(6, 4), torch.randn(5, 3, 6)),
        (Conv1D(4, 6), torch.randn(2, 7, 6)),
        (nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1), torch.randn(2, 3, 9, 8)),
        (nn.Conv2d(4, 2, (2, 3), padding=(1, 0), dilation=2), torch.randn(3, 4, 7, 9)),
        (nn.Conv1d(3, 4, 3, padding=1), torch.randn(2, 3, 10)),
    ],
)
def test_2d_view_reproduces_the_layer(module: nn.Module, x: torch.Tensor) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        w = weight_2d(module)
        rows = inputs_2d(module, x) @ w.t() + module.bias
        assert torch.allclose(rows, _as_rows(module, module(x)), atol=1e-5)
        assert torch.equal(from_2d(module, to_2d(module, module.weight)), module.weight)


def test_conv_columns_are_channels_fastest() -> None:
    conv = nn.Conv2d(4, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(16.0).view(1, 4, 2, 2))
    # column order (kh, kw, channel): the 4 channels of kernel position (0, 0) come first
    assert weight_2d(conv)[0, :4].tolist() == [0.0, 4.0, 8.0, 12.0]


def test_stats_stream_equals_one_batch() -> None:
    x = torch.randn(50, 7, dtype=torch.float64)
    one, two = InputStats(7, dtype=torch.float64), InputStats(7, dtype=torch.float64)
    one.update(x)
    two.update(x[:13])
    two.update(x[13:])
    assert two.count == 50
    assert torch.allclose(two.hessian(), 2 * x.t() @ x / 50)
    assert torch.allclose(two.column_norms(), x.norm(dim=0))
    assert torch.allclose(one.hessian(), two.hessian())
    with pytest.raises(ValueError, match=r"shape \(N, 7\)"):
        one.update(torch.randn(3, 5))


def test_wanda_scores_by_hand() -> None:
    w = torch.tensor([[1.0, -2.0, 3.0], [4.0, 0.5, -1.0]])
    # inputs: one vector per row; column norms sqrt(1+0), sqrt(4+0), sqrt(0.09+0.16)
    x = torch.tensor([[1.0, 2.0, 0.3], [0.0, 0.0, 0.4]])
    stats = InputStats(3, hessian=False)
    stats.update(x)
    norms = stats.column_norms()
    assert torch.allclose(norms, torch.tensor([1.0, 2.0, 0.5]))
    scores = wanda_scores(w, norms)
    assert torch.allclose(scores, torch.tensor([[1.0, 4.0, 1.5], [4.0, 1.0, 0.5]]))
    # per-row comparison: each row loses its lowest score (magnitude would drop 0.5 and -1)
    pruned = wanda_mask(w, norms, 2 / 6)
    assert pruned.tolist() == [[True, False, False], [False, False, True]]


def _correlated_inputs(n: int, d: int, gen: torch.Generator, held_out: int = 0):
    """Inputs like hidden activations: ReLU of a rank-d/2 mixture plus a little noise,
    features on scales spread over two decades; with ``held_out``, that many more
    draws from the same distribution."""
    mix = torch.randn(d // 2, d, generator=gen) / (d // 2) ** 0.5
    scales = torch.logspace(-1, 1, d)[torch.randperm(d, generator=gen)]
    z = torch.randn(n + held_out, d // 2, generator=gen)
    x = (torch.relu(z @ mix) + 0.1 * torch.randn(n + held_out, d, generator=gen)) * scales
    return (x[:n], x[n:]) if held_out else x


def _magnitude_layer(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    k = round(sparsity * w.numel())
    order = torch.sort(w.abs().flatten(), stable=True).indices[:k]
    out = w.clone().flatten()
    out[order] = 0
    return out.view_as(w)


@pytest.mark.parametrize("sparsity, nm", [(0.5, None), (0.8, None), (0.5, (2, 4))])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude(sparsity, nm) -> None:
    gen = torch.Generator().manual_seed(0)
    d_in, d_out = 64, 24
    w = torch.randn(d_out, d_in, generator=gen)
    calib, held_out = _correlated_inputs(512, d_in, gen, held_out=512)
    stats = InputStats(d_in)
    for chunk in calib.split(100):
        stats.update(chunk)
    kw = dict(n=nm[0], m=nm[1]) if nm else dict(sparsity=sparsity)
    sgpt, _ = sparsegpt_prune(w, stats.hessian(), **kw)
    wan = w * ~wanda_mask(w, stats.column_norms(), **kw)
    mag = w * ~nm_prune(w.abs(), *nm) if nm else _magnitude_layer(w, sparsity)

    def err(v: torch.Tensor) -> float:
        return float((held_out @ (w - v).t()).norm())

    assert err(sgpt) < err(wan)
    assert err(sgpt) < err(mag)


@pytest.mark.parametrize("shape, sparsity, blocksize", [((7, 13), 0.37, 5), ((16, 40), 0.9, 128)])
def test_exact_sparsity_per_layer(shape, sparsity, blocksize) -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(*shape, generator=gen)
    x = torch.randn(200, shape[1], generator=gen)
    stats = InputStats(shape[1])
    stats.update(x)
    expected = round(sparsity * w.numel())
    out, pruned = sparsegpt_prune(w, stats.hessian(), sparsity, blocksize=blocksize)
    assert int(pruned.sum()) == expected == int((out == 0).sum())
    assert int(wanda_mask(w, stats.column_norms(), sparsity).sum()) == expected
    rows = wanda_mask(w, stats.column_norms(), sparsity).sum(1)
    assert int(rows.max() - rows.min()) <= 1  # per-row comparison: equal shares


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
def test_nm_exactly_n_nonzeros_per_group(n: int, m: int) -> None:
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(10, 48, generator=gen)
    x = _correlated_inputs(300, 48, gen)
    stats = InputStats(48)
    stats.update(x)
    out, pruned = sparsegpt_prune(w, stats.hessian(), n=n, m=m, blocksize=30)
    assert ((out != 0).reshape(-1, m).sum(1) == n).all()
    assert ((~pruned).reshape(-1, m).sum(1) == n).all()
    keep = ~wanda_mask(w, stats.column_norms(), n=n, m=m)
    assert (keep.reshape(-1, m).sum(1) == n).all()


def test_dead_inputs_are_pruned_first_without_nans() -> None:
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(6, 10, generator=gen)
    x = torch.randn(100, 10, generator=gen)
    x[:, [2, 7]] = 0  # two inputs never fire
    stats = InputStats(10)
    stats.update(x)
    out, pruned = sparsegpt_prune(w, stats.hessian(), 12 / 60)
    assert torch.isfinite(out).all()
    assert pruned[:, [2, 7]].all() and int(pruned.sum()) == 12
    # with a smaller budget, the kept dead weights stay as they were
    out, pruned = sparsegpt_prune(w, stats.hessian(), 6 / 60)
    assert pruned[:, [2, 7]].sum() == 6 and torch.isfinite(out).all()


def test_forced_entries_stay_pruned_and_count() -> None:
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(8, 20, generator=gen)
    stats = InputStats(20)
    stats.update(torch.randn(64, 20, generator=gen))
    forced = torch.rand(8, 20, generator=gen) < 0.3
    for pruned in (
        sparsegpt_prune(w, stats.hessian(), 0.5, forced=forced, blocksize=7)[1],
        wanda_mask(w, stats.column_norms(), 0.5, forced=forced),
    ):
        assert pruned[forced].all() and int(pruned.sum()) == 80


def test_zero_sparsity_changes_nothing() -> None:
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(5, 9, generator=gen)
    stats = InputStats(9)
    stats.update(torch.randn(30, 9, generator=gen))
    out, pruned = sparsegpt_prune(w, stats.hessian(), 0.0)
    assert not pruned.any() and torch.allclose(out, w, atol=1e-6)


def test_split_count_is_exact_and_bounded() -> None:
    caps = torch.tensor([3, 0, 5, 1, 7])
    for total in range(0, 17):
        share = split_count(total, caps)
        assert int(share.sum()) == total and (share <= caps).all() and (share >= 0).all()


def test_a_whole_layer_can_go() -> None:
    w = torch.randn(3, 8)
    stats = InputStats(8)
    stats.update(torch.randn(20, 8))
    out, pruned = sparsegpt_prune(w, stats.hessian(), 1.0)
    assert pruned.all() and (out == 0).all()
    assert wanda_mask(w, stats.column_norms(), 1.0).all()


def test_sparsegpt_takes_a_transposed_weight() -> None:
    """GPT-2's Conv1D stores its weight (in, out): the (out, in) view SparseGPT gets is a
    non-contiguous transpose, and must give what the contiguous copy gives."""
    torch.manual_seed(0)
    stored = torch.randn(12, 8)  # (in, out)
    x = torch.randn(64, 12)
    h = 2 * x.T @ x
    w_view = stored.t()  # (out, in), not contiguous
    assert not w_view.is_contiguous()
    got, mask = sparsegpt_prune(w_view, h, sparsity=0.5, blocksize=4)
    want, mask_c = sparsegpt_prune(w_view.contiguous(), h, sparsity=0.5, blocksize=4)
    assert torch.equal(mask, mask_c) and torch.equal(got, want)
    assert int(mask.sum()) == 48

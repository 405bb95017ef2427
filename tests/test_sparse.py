"""Sparse (CSR) inference: same outputs as dense, CSR used only where measured faster."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import create_model, prune
from prunekit.inference.sparse import (
    SparseLinear,
    interleaved_samples,
    interleaved_timer,
    to_sparse_inference,
)
from prunekit.pruning.masks import effective
from prunekit.registry import PrunekitError


def sparse_linear(out: int, inp: int, density: float, seed: int = 0) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(inp, out)
    with torch.no_grad():
        layer.weight.mul_((torch.rand(out, inp, generator=gen) < density).float())
    return layer


def test_sparse_linear_equals_dense() -> None:
    layer = sparse_linear(30, 50, 0.1)
    csr = SparseLinear.from_linear(layer)
    assert csr.weight.layout == torch.sparse_csr
    assert csr.nnz == int((layer.weight != 0).sum())
    x = torch.randn(7, 50)
    ref = F.linear(x, layer.weight, layer.bias)
    assert torch.allclose(csr(x), ref, atol=1e-5)
    x3 = torch.randn(2, 3, 50)  # (..., in_features)
    assert torch.allclose(csr(x3), F.linear(x3, layer.weight, layer.bias), atol=1e-5)
    with torch.inference_mode():  # F.linear with a CSR weight would fail here
        assert torch.allclose(csr(x), ref, atol=1e-5)
    nobias = SparseLinear(layer.weight.detach())
    assert torch.allclose(nobias(x), x @ layer.weight.T, atol=1e-5)
    assert not csr(x.requires_grad_()).requires_grad  # inference only
    assert "nnz=" in repr(csr)


def test_sparse_linear_uses_the_masked_weight() -> None:
    model = create_model("lenet300")
    prune(model, "magnitude", 0.9)
    csr = SparseLinear.from_linear(model.fc1)
    assert torch.equal(csr.weight.to_dense(), effective(model.fc1).detach())
    with pytest.raises(PrunekitError, match="2-D weight"):
        SparseLinear(torch.zeros(3))


def stub(dense_ms: float, csr_ms: float, calls: list | None = None):
    def timer(dense: nn.Module, csr: nn.Module, x: torch.Tensor) -> tuple[float, float]:
        if calls is not None:
            calls.append((type(dense).__name__, type(csr).__name__, tuple(x.shape)))
        return dense_ms, csr_ms

    return timer


def pruned_lenet300(sp: float = 0.95) -> nn.Module:
    model = create_model("lenet300")
    prune(model, "magnitude", sp, scope="layer")
    return model


def test_keeps_dense_when_dense_is_faster() -> None:
    model = pruned_lenet300()
    calls: list = []
    out, decisions = to_sparse_inference(
        model, torch.rand(8, 1, 28, 28), measure=stub(1.0, 2.0, calls)
    )
    assert not any(isinstance(m, SparseLinear) for m in out.modules())
    assert [d.use_csr for d in decisions] == [False, False, False]
    assert [d.dense_ms for d in decisions] == [1.0, 1.0, 1.0]
    # the timer saw each layer with the activation that reaches it
    assert calls == [
        ("Linear", "SparseLinear", (8, 784)),
        ("Linear", "SparseLinear", (8, 300)),
        ("Linear", "SparseLinear", (8, 100)),
    ]


def test_uses_csr_when_faster_and_outputs_match() -> None:
    model = pruned_lenet300()
    x = torch.rand(16, 1, 28, 28)
    out, decisions = to_sparse_inference(model, x, measure=stub(2.0, 1.0))
    assert [type(out.get_submodule(n)).__name__ for n in ("fc1", "fc2", "fc3")] == [
        "SparseLinear"
    ] * 3
    assert all(d.use_csr and d.reason.startswith("measured") for d in decisions)
    with torch.no_grad():
        assert torch.allclose(out(x), model(x), atol=1e-5)
    assert isinstance(model.fc1, nn.Linear)  # the input model is left unchanged
    assert hasattr(model.fc1, "weight_mask")


def test_min_sparsity_min_speedup_and_no_timing() -> None:
    model = create_model("lenet300")
    with torch.no_grad():  # fc1 95 % zero, fc2 50 % zero, fc3 dense
        model.fc1.weight.mul_((torch.rand(300, 784) > 0.95).float())
        model.fc2.weight[:50] = 0
    x = torch.rand(4, 1, 28, 28)
    out, dec = to_sparse_inference(model, x, min_sparsity=0.9, measure=False)
    assert [d.use_csr for d in dec] == [True, False, False]
    assert dec[1].reason == "sparsity 0.5000 < min_sparsity 0.9"
    assert dec[0].dense_ms is None and dec[0].reason.startswith("measure=False")
    assert dec[1].sparsity == 0.5 and dec[0].shape == (300, 784)
    _, dec = to_sparse_inference(
        model, x, min_sparsity=0.4, measure=stub(1.5, 1.0), min_speedup=2.0
    )
    assert [d.use_csr for d in dec] == [False, False, False]  # 1.5x < the 2x asked for
    with pytest.raises(PrunekitError, match="min_sparsity"):
        to_sparse_inference(model, x, min_sparsity=1.5)
    with pytest.raises(PrunekitError, match="no Linear layers"):
        to_sparse_inference(nn.Sequential(nn.ReLU()), x)


def test_layer_not_reached_is_left_alone() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = sparse_linear(4, 8, 0.05), sparse_linear(4, 8, 0.05)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    out, dec = to_sparse_inference(TwoHeads(), torch.randn(2, 8), min_sparsity=0.5, measure=False)
    assert [(d.layer, d.use_csr) for d in dec] == [("used", True), ("unused", False)]
    assert dec[1].reason == "not reached by the example input"


def test_interleaved_samples_alternate_candidates() -> None:
    order: list[str] = []
    ms = interleaved_samples(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")},
        repeats=3,
        warmup=1,
        min_time_s=0.0,
    )
    assert order == ["a", "b"] * 4  # one call per candidate per round, warmup included
    assert [len(v) for v in ms.values()] == [3, 3]
    with pytest.raises(PrunekitError, match="'median' or 'min'"):
        interleaved_timer(stat="mean")


def test_real_timer_runs() -> None:
    """The default timer returns positive medians for both variants (values not asserted:
    timings belong in benchmarks)."""
    model = pruned_lenet300(0.99)
    timer = interleaved_timer(repeats=2, warmup=0, min_time_s=0.0, stat="min")
    out, dec = to_sparse_inference(model, torch.rand(2, 1, 28, 28), measure=timer)
    assert all(d.dense_ms > 0 and d.csr_ms > 0 for d in dec)
    assert all(isinstance(out.get_submodule(d.layer), SparseLinear) == d.use_csr for d in dec)

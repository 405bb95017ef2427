"""transformers' Conv1D (weight (in, out), transposed vs nn.Linear) as a prunable layer."""

from __future__ import annotations

import pytest
import torch

import prunekit
from prunekit.evaluation.cost import layer_sparsity, macs
from prunekit.pruning.masks import effective, n_units, out_in, prunable_modules

transformers = pytest.importorskip("transformers")
from transformers.pytorch_utils import Conv1D  # noqa: E402


def tiny_gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, tie_word_embeddings=True
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def conv1d_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, Conv1D)}


def test_gpt2_layer_scope_halves_every_conv1d_and_leaves_embedding():
    model = tiny_gpt2()
    wte = model.transformer.wte.weight.detach().clone()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    layers = conv1d_layers(model)
    assert len(layers) == 8  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block
    assert set(prunable_modules(model)) == set(layers)  # lm_head is tied: left out
    prunekit.prune(model, "magnitude", 0.5, scope="layer")
    for name, m in layers.items():
        w = effective(m)
        assert int((w == 0).sum()) == w.numel() // 2, name
    assert torch.equal(model.transformer.wte.weight, wte)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert not hasattr(model.lm_head, "weight_mask")
    ids = torch.randint(0, 64, (2, 8))
    assert torch.isfinite(model(ids).logits).all()


def test_conv1d_neuron_granularity_zeroes_columns():
    torch.manual_seed(0)
    layer = Conv1D(6, 4)  # nf=6 outputs, nx=4 inputs: weight (4, 6)
    torch.nn.init.uniform_(layer.bias, 0.1, 1.0)  # Conv1D starts with a zero bias
    model = torch.nn.Sequential(layer, torch.nn.ReLU(), torch.nn.Linear(6, 3))
    assert n_units(layer) == 6
    prunekit.prune(model, "magnitude", 0.5, granularity="neuron", scope="layer")
    w = effective(layer)
    dead_cols = (w == 0).all(0)
    assert int(dead_cols.sum()) == 3  # whole output units, i.e. columns
    assert int((w == 0).sum()) == 3 * 4
    assert torch.equal(effective(layer, "bias") == 0, dead_cols)
    assert layer_sparsity(model)["0"]["units_alive"] == 3


def test_conv1d_nm_groups_run_along_inputs():
    torch.manual_seed(0)
    layer = Conv1D(3, 8)  # weight (8, 3): 8 inputs
    model = torch.nn.Sequential(layer, torch.nn.ReLU(), torch.nn.Linear(3, 2))
    prunekit.prune(model, "magnitude", 0.5, granularity="nm", exclude=["2"])
    w = out_in(layer, effective(layer))  # (out, in)
    nonzero = (w != 0).view(3, 2, 4).sum(-1)
    assert torch.equal(nonzero, torch.full((3, 2), 2))
    # the 2 largest |w| of each group of 4 consecutive inputs are the ones kept
    orig = out_in(layer, layer.weight_orig.detach()).abs().view(3, 2, 4)
    kept = (w != 0).view(3, 2, 4)
    top2 = torch.zeros_like(kept).scatter_(-1, orig.topk(2, dim=-1).indices, True)
    assert torch.equal(kept, top2)


def test_conv1d_macs_and_units():
    layer = Conv1D(6, 4)
    model = torch.nn.Sequential(layer)
    with torch.no_grad():
        layer.weight[0].zero_()  # one input row: 6 weights
    dense, eff = macs(model, (3, 4))  # 3 positions x 4 inputs x 6 outputs
    assert (dense, eff) == (72, 54)
    info = layer_sparsity(model)["0"]
    assert info["units"] == 6 and info["params"] == 24 and info["nonzero"] == 18


def test_conv1d_units_are_removed_by_surgery():
    from prunekit.surgery.shrink import shrink

    torch.manual_seed(0)
    model = torch.nn.Sequential(Conv1D(8, 4), torch.nn.ReLU(), Conv1D(3, 8))
    prunekit.prune(model, "magnitude", 0.5, granularity="neuron")
    x = torch.randn(5, 4)
    small, info = shrink(model, x)
    assert info["units"] == {"0": 4, "2": 3}
    assert small[0].weight.shape == (4, 4) and small[2].weight.shape == (4, 3)
    torch.testing.assert_close(small(x), model(x), atol=1e-6, rtol=0)

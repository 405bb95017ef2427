"""shrink / save / load on models written by the user and on Hugging Face models."""

from __future__ import annotations

import pytest
import torch
from test_pruner import Net
from torch import nn

import prunekit
from prunekit import PrunekitError
from prunekit.autoshrink import outputs
from prunekit.evaluation.cost import param_counts


def same(a: nn.Module, b: nn.Module, x, atol: float = 1e-5) -> None:
    for ya, yb in zip(outputs(a, x), outputs(b, x), strict=True):
        torch.testing.assert_close(yb, ya, atol=atol * max(1.0, float(ya.abs().max())), rtol=0)


def test_shrink_save_load_own_model(tmp_path):
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.rand(4, 1, 8, 8)
    prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")
    small = prunekit.shrink(model, x)
    assert small.prunekit_shrink["backend"] == "prunekit"
    assert param_counts(small)[0] < param_counts(model)[0]
    assert small.conv1.out_channels == small.conv2.out_channels == 4  # residual-tied, halved
    assert small.conv3.out_channels == 16  # GroupNorm after it: kept
    assert small.fc1.out_features == 16
    same(model, small, x)
    prunekit.save(small, tmp_path / "m")
    again = prunekit.load(tmp_path / "m", model=Net())
    assert again.conv1.weight.shape == small.conv1.weight.shape
    same(small, again, x, atol=0)
    assert not again.training


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it; Torch-Pruning can."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        if h.sum() > -1:  # always true, but a branch on data
            h = torch.relu(self.fc2(h))
        return self.head(h)


def test_untraceable_model_goes_to_torch_pruning(tmp_path):
    pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    model = Branchy().eval()
    with torch.no_grad():
        for layer in (model.fc1, model.fc2):
            layer.weight[:3] = 0
            layer.bias[:3] = 0
    x = torch.randn(5, 6)
    small = prunekit.shrink(model, x)
    assert small.prunekit_shrink["backend"] == "torch-pruning"
    assert (small.fc1.out_features, small.fc2.out_features) == (5, 5)
    same(model, small, x)
    prunekit.save(small, tmp_path / "b")
    same(small, prunekit.load(tmp_path / "b", model=Branchy()), x, atol=0)


def test_unshrinkable_layer_is_named():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Softmax(dim=1), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(PrunekitError, match="Softmax at '1'"):
        prunekit.shrink(model, torch.rand(1, 1, 4, 4), backend="prunekit")


def test_load_into_a_different_model_is_one_line(tmp_path):
    prunekit.save(Net(), tmp_path / "n")
    with pytest.raises(PrunekitError, match="fresh instance") as e:
        prunekit.load(tmp_path / "n", model=Branchy())
    assert "\n" not in str(e.value)


transformers = pytest.importorskip("transformers")


def gpt2() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=64,
        n_positions=16,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def bert() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=16,
    )
    return transformers.BertModel(cfg).eval()


@pytest.mark.parametrize(("build", "mlp"), [(gpt2, "mlp.c_fc"), (bert, "intermediate.dense")])
def test_hf_mlp_neurons_removed_and_reloaded(tmp_path, build, mlp):
    model = build()
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    layers = prunekit.pruning.masks.prunable_modules(model)
    others = [n for n in layers if not n.endswith(mlp)]
    with pytest.warns(UserWarning, match="layer by layer"):  # fx cannot trace HF models
        prunekit.prune(model, "magnitude", 0.5, granularity="neuron", scope="layer", exclude=others)
    small = prunekit.shrink(model, ids)
    assert small.prunekit_shrink["backend"] == "hf-mlp"
    assert param_counts(small)[0] < param_counts(model)[0]
    n_units = prunekit.pruning.masks.n_units
    hidden = [(n, m) for n, m in small.named_modules() if n.endswith(mlp)]
    assert len(hidden) == 2
    for name, m in hidden:  # half of the hidden units (48 in BERT, 128 in GPT-2) removed
        assert n_units(m) == n_units(model.get_submodule(name)) // 2
    same(model, small, ids)
    prunekit.save(small, tmp_path / "hf")
    again = prunekit.load(tmp_path / "hf", model=build())
    same(small, again, ids, atol=0)


def test_hf_masked_model_saved_in_its_own_format(tmp_path):
    model = gpt2()
    prunekit.prune(model, "magnitude", 0.5, scope="layer")
    prunekit.save(model, tmp_path / "g")
    assert (tmp_path / "g" / "config.json").exists()
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "g").eval()
    ids = torch.randint(0, 64, (2, 8))
    same(model, again, ids, atol=0)
    assert prunekit.sparsity(again) == pytest.approx(0.5)


def test_hf_dead_attention_heads_removed(tmp_path):
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(2))
    g = gpt2()
    with torch.no_grad():
        a0, a1 = g.transformer.h[0].attn, g.transformer.h[1].attn
        a0.c_attn.weight[:, 64:80] = 0  # head 0's value columns (v starts at 2 * 32)
        a0.c_attn.bias[64:80] = 0
        a1.c_proj.weight[16:32] = 0  # head 1's rows of the output projection
    small = prunekit.shrink(g, ids)
    assert (small.transformer.h[0].attn.num_heads, small.transformer.h[1].attn.num_heads) == (1, 1)
    assert small.transformer.h[0].attn.c_attn.weight.shape == (32, 48)
    same(g, small, ids)
    prunekit.save(small, tmp_path / "g")
    again = prunekit.load(tmp_path / "g", model=gpt2())
    assert again.transformer.h[1].attn.num_heads == 1
    same(small, again, ids, atol=0)

    b = bert()
    with torch.no_grad():
        v = b.encoder.layer[0].attention.self.value
        v.weight[16:32] = 0
        v.bias[16:32] = 0
    small = prunekit.shrink(b, ids)
    s = small.encoder.layer[0].attention.self
    assert (s.num_attention_heads, s.query.out_features) == (1, 16)
    same(b, small, ids)
    prunekit.save(small, tmp_path / "b")
    same(small, prunekit.load(tmp_path / "b", model=bert()), ids, atol=0)

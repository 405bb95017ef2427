"""MACs of transformers: attention's products counted (dense), token-id inputs accepted,
pruned Conv1D weights counted by their nonzeros (issue 13)."""

from __future__ import annotations

import pytest
import torch

import prunekit
from prunekit.evaluation.cost import macs

transformers = pytest.importorskip("transformers")

T, E, L, V, H = 8, 32, 2, 50, 4


def _gpt2(impl: str):
    cfg = transformers.GPT2Config(
        n_layer=L, n_embd=E, n_head=H, n_positions=16, vocab_size=V, eos_token_id=0, bos_token_id=0
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel._from_config(cfg, attn_implementation=impl).eval()


# Per block: c_attn E->3E, c_proj E->E, c_fc E->4E, mlp c_proj 4E->E, at T positions;
# the tied output layer E->V at T positions; attention: Q K^T and A V, T*T*E each.
BLOCK_LINEAR = T * (E * 3 * E + E * E + E * 4 * E + 4 * E * E)
HEAD = T * E * V
ATTENTION = 2 * T * T * E


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_gpt2_macs_count_attention_on_token_ids(impl: str) -> None:
    model = _gpt2(impl)
    ids = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(0))
    dense, effective = macs(model, example_inputs=ids)
    assert dense == L * BLOCK_LINEAR + HEAD + L * ATTENTION
    assert effective == dense  # nothing pruned


def test_pruned_conv1d_counts_nonzeros_attention_stays_dense() -> None:
    model = _gpt2("sdpa")
    prunekit.prune(model, "magnitude", 0.5, scope="layer")
    ids = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(0))
    dense, effective = macs(model, example_inputs=ids)
    assert dense == L * BLOCK_LINEAR + HEAD + L * ATTENTION
    # every block Conv1D keeps exactly half its weights; lm_head (tied) and attention dense
    assert effective == L * BLOCK_LINEAR // 2 + HEAD + L * ATTENTION


def test_macs_needs_a_shape_or_inputs() -> None:
    with pytest.raises(prunekit.PrunekitError, match="input_shape or example_inputs"):
        macs(prunekit.create_model("lenet300"))


def test_vision_counts_unchanged_by_the_flop_counter() -> None:
    """LeNet-300-100: 784*300 + 300*100 + 100*10 MACs, from the counter and the hooks."""
    model = prunekit.create_model("lenet300")
    assert macs(model, (1, 28, 28)) == (266200, 266200)
    prunekit.prune(model, "magnitude", 0.9)
    dense, effective = macs(model, (1, 28, 28))
    assert dense == 266200 and effective == round(266200 * 0.1)

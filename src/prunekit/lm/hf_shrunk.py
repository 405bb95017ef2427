"""A GPT-2 whose blocks may have fewer attention heads and MLP units than its config's
``n_head`` / ``n_inner``: the saved form of a head-pruned GPT-2.

``transformers``' ``GPT2Config`` has one ``n_head`` and one ``n_inner`` for all layers
and ties the head width to them (``head_dim = n_embd // n_head``, ``c_attn`` always
``3 * n_embd`` wide), so it cannot describe a GPT-2 with heads removed at all, even the
same number in every layer. ``PrunedGPT2Config`` keeps every GPT-2 field (``n_head``
still fixes ``head_dim``) and adds ``layer_heads`` and ``layer_inner``, the head count
and MLP width of each block; ``PrunedGPT2LMHeadModel`` builds those widths before the
weights are loaded, and otherwise is GPT-2.

This file imports only ``torch`` and ``transformers``: ``save_pretrained`` copies it
into the model directory (``auto_map`` in ``config.json``), so
``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`` loads the model
without prunekit installed; with prunekit imported (:func:`register`), the classes are
registered with the Auto classes and no remote code is needed.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D


class PrunedGPT2Config(GPT2Config):
    model_type = "prunekit_gpt2"

    def __init__(
        self, layer_heads: list[int] | None = None, layer_inner: list[int] | None = None, **kw
    ) -> None:
        super().__init__(**kw)
        self.layer_heads = list(layer_heads) if layer_heads is not None else None
        self.layer_inner = list(layer_inner) if layer_inner is not None else None


class PrunedGPT2LMHeadModel(GPT2LMHeadModel):
    config_class = PrunedGPT2Config

    def __init__(self, config: PrunedGPT2Config) -> None:
        super().__init__(config)
        e = config.n_embd
        d = e // config.n_head
        blocks = self.transformer.h
        heads = config.layer_heads or [config.n_head] * len(blocks)
        inner = config.layer_inner or [config.n_inner or 4 * e] * len(blocks)
        if len(heads) != len(blocks) or len(inner) != len(blocks):
            raise ValueError(
                f"layer_heads/layer_inner need {len(blocks)} entries, got {len(heads)}/{len(inner)}"
            )
        for block, h, m in zip(blocks, heads, inner, strict=True):
            attn = block.attn
            attn.c_attn = Conv1D(3 * h * d, e)
            attn.c_proj = Conv1D(e, h * d)
            attn.num_heads, attn.split_size = h, h * d  # head_dim and scaling unchanged
            block.mlp.c_fc = Conv1D(m, e)
            block.mlp.c_proj = Conv1D(e, m)


def register() -> None:
    """Make the Auto classes load ``prunekit_gpt2`` directories without remote code, and
    make ``save_pretrained`` write this file and ``auto_map`` for those without prunekit."""
    AutoConfig.register(PrunedGPT2Config.model_type, PrunedGPT2Config, exist_ok=True)
    AutoModelForCausalLM.register(PrunedGPT2Config, PrunedGPT2LMHeadModel, exist_ok=True)
    PrunedGPT2Config.register_for_auto_class()
    PrunedGPT2LMHeadModel.register_for_auto_class("AutoModelForCausalLM")

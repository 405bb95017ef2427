"""Language models: the zoo's ``gpt-tiny`` and any local ``transformers`` causal LM.

``gpt-tiny`` is ``transformers``' GPT-2 (so its linear layers are ``Conv1D``, weight
``(in, out)``) at a small size over the byte vocabulary: 4 blocks, width 128, 4 heads,
MLP 512, context 128, no dropout: 842,496 parameters, of which 786,432 are the
blocks' linear weights (what is pruned). Sized to train on two CPU cores in minutes.

``hf:PATH`` loads a directory written by ``save_pretrained`` with
``AutoModelForCausalLM`` and its own tokenizer (``AutoTokenizer``); a directory that
holds another kind of model (an encoder, a classifier) is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..registry import PrunekitError
from .text import ByteTokenizer, HFTokenizer, Tokenizer

LM_MODELS = ("gpt-tiny",)
GPT_TINY = dict(n_layer=4, n_embd=128, n_head=4, n_inner=512, n_positions=128)


def is_lm_model(name: str) -> bool:
    return name.startswith("hf:") or name in LM_MODELS


def gpt_tiny(vocab_size: int = 256, **overrides: Any) -> nn.Module:
    """A GPT-2 LM from ``GPT_TINY`` (``overrides`` change any GPT2Config field)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    fields = {
        **GPT_TINY,
        "vocab_size": vocab_size,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
        **overrides,
    }
    try:
        config = GPT2Config(**fields)
    except (TypeError, ValueError) as e:
        raise PrunekitError(f"gpt-tiny: invalid configuration: {e}") from None
    return GPT2LMHeadModel(config)


def load_hf(path: str | Path) -> tuple[nn.Module, Tokenizer]:
    """A local ``transformers`` causal LM and its tokenizer, in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise PrunekitError(f"hf:{path}: no config.json there; not a transformers model directory")
    try:
        config = AutoConfig.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise PrunekitError(f"hf:{path}: cannot read its config: {_first_line(e)}") from None
    arch = list(getattr(config, "architectures", None) or [])
    not_causal = PrunekitError(
        f"hf:{path} is not a causal language model ({', '.join(arch) or config.model_type}); "
        "prunekit prunes AutoModelForCausalLM models"
    )
    # A saved encoder or classifier names its class; AutoModelForCausalLM would otherwise
    # wrap e.g. a BERT classifier's weights in a freshly initialised LM head.
    if arch and not set(arch) & _causal_lm_classes():
        raise not_causal
    try:
        model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True)
    except ValueError:
        raise not_causal from None
    except OSError as e:
        raise PrunekitError(f"hf:{path}: cannot load its weights: {_first_line(e)}") from None
    try:
        tok = AutoTokenizer.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise PrunekitError(f"hf:{path}: cannot load its tokenizer: {_first_line(e)}") from None
    return model.eval(), HFTokenizer(tok, f"hf:{p}")


def build_lm(name: str, **kwargs: Any) -> tuple[nn.Module, Tokenizer]:
    """(model, tokenizer) of an LM name: ``gpt-tiny`` (fresh weights) or ``hf:PATH``."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise PrunekitError(
            "language models need transformers: pip install 'prunekit[lm]'"
        ) from None
    if name.startswith("hf:"):
        if kwargs:
            raise PrunekitError(f"{name}: model options {sorted(kwargs)} apply to gpt-tiny only")
        return load_hf(name.removeprefix("hf:"))
    if name == "gpt-tiny":
        tok = ByteTokenizer()
        return gpt_tiny(tok.vocab_size, **kwargs), tok
    raise PrunekitError(f"unknown language model {name!r}; known: hf:PATH, {', '.join(LM_MODELS)}")


def _causal_lm_classes() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return {v for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() if isinstance(v, str)}


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]

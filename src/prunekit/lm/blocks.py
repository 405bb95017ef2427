"""Layer-sequential calibration through the transformer blocks, one block at a time.

The calibration windows run through the embeddings once, up to the first block, where a
catcher records the block's inputs (hidden states plus the arguments the model passes:
causal mask, position ids or rotary embeddings) and stops the forward. Then, for each
block in order:

1. its linear layers' inputs are observed (forward hooks feed per-layer statistics)
   while the block runs on the recorded inputs;
2. ``prune_block`` prunes that block's layers from those statistics;
3. the *pruned* block runs on the same inputs, and its outputs replace them as the
   next block's inputs (SparseGPT's and Wanda's sequential scheme: later blocks are
   calibrated on what the pruned earlier blocks actually produce).

Memory beyond the model is the hidden states of the calibration set (``n x L x d``,
one copy, overwritten block by block) plus one block's statistics (``in x in`` per layer
for SparseGPT), independent of depth. Nothing runs the whole model on the calibration
set except the embedding step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..pruning.reconstruction import is_hf_conv1d
from ..registry import PrunekitError

# Where known causal-LM families keep their block list, most specific first.
BLOCK_PATHS = (
    "transformer.h",  # GPT-2, GPT-J, Bloom, Falcon
    "model.layers",  # LLaMA, Mistral, Qwen, Gemma, Phi
    "model.decoder.layers",  # OPT
    "gpt_neox.layers",  # Pythia / GPT-NeoX
    "transformer.blocks",  # MPT
)


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(path, ModuleList) of the transformer blocks: a known path, else the longest
    ModuleList in the model (a model with none is refused)."""
    modules = dict(model.named_modules())
    for path in BLOCK_PATHS:
        if isinstance(modules.get(path), nn.ModuleList):
            return path, modules[path]
    lists = [(n, m) for n, m in modules.items() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise PrunekitError(f"{type(model).__name__}: no list of transformer blocks found")
    return max(lists, key=lambda nm: len(nm[1]))


def is_linear(module: nn.Module) -> bool:
    """nn.Linear or transformers' Conv1D (GPT-2's linear layer, weight stored (in, out))."""
    return isinstance(module, nn.Linear) or is_hf_conv1d(module)


def block_linears(block: nn.Module) -> dict[str, nn.Module]:
    """The linear layers of one block, by name relative to the block."""
    return {n: m for n, m in block.named_modules() if n and is_linear(m)}


def prunable_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear layer inside the blocks, by qualified name: what LM pruning targets
    (embeddings, the final norm and the output layer are outside the blocks)."""
    path, blocks = find_blocks(model)
    return {
        f"{path}.{i}.{n}": m
        for i, block in enumerate(blocks)
        for n, m in block_linears(block).items()
    }


class _Stop(Exception):
    pass


class _Catcher(nn.Module):
    """Stands in for block 0: records its call and stops the forward."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.calls: list[tuple[torch.Tensor, tuple, dict]] = []

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((hidden, args, kwargs))
        raise _Stop

    def __getattr__(self, name: str) -> Any:  # models read attributes of their blocks
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["block"], name)


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def capture_inputs(
    model: nn.Module, calib: torch.Tensor, batch_size: int
) -> list[tuple[torch.Tensor, tuple, dict]]:
    """Block 0's inputs for ``calib`` (``(n, L)`` token ids), batch by batch."""
    _, blocks = find_blocks(model)
    catcher = _Catcher(blocks[0])
    blocks[0] = catcher
    try:
        for i in range(0, calib.shape[0], batch_size):
            with contextlib.suppress(_Stop):
                model(input_ids=calib[i : i + batch_size], use_cache=False)
    finally:
        blocks[0] = catcher.block
    if len(catcher.calls) != -(-calib.shape[0] // batch_size):
        raise PrunekitError(f"{type(model).__name__}: its first block was not reached")
    return catcher.calls


def run_block(block: nn.Module, inputs: list[tuple[torch.Tensor, tuple, dict]]) -> None:
    """Replace each recorded input's hidden states by ``block``'s output (in place)."""
    with torch.no_grad():
        for k, (h, args, kwargs) in enumerate(inputs):
            inputs[k] = (_hidden(block(h, *args, **kwargs)), args, kwargs)


def observe(
    block: nn.Module,
    inputs: list[tuple[torch.Tensor, tuple, dict]],
    on_input: dict[str, Callable[[torch.Tensor], None]],
) -> None:
    """Run ``block`` on ``inputs`` with ``on_input[name](x)`` called on each input of
    its linear layer ``name``; outputs are discarded."""
    linears = block_linears(block)
    handles = [
        linears[name].register_forward_pre_hook(lambda _m, args, f=fn: f(args[0].detach()))
        for name, fn in on_input.items()
    ]
    try:
        with torch.no_grad():
            for h, args, kwargs in inputs:
                block(h, *args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()


def sequential(
    model: nn.Module,
    calib: torch.Tensor | None,
    prune_block: Callable[[int, nn.Module, list | None], None],
    *,
    batch_size: int = 8,
) -> None:
    """Call ``prune_block(index, block, inputs)`` for each block in order, with the
    block's recorded calibration inputs (``None`` when ``calib`` is None: a data-free
    method), then advance the inputs through the pruned block (module docstring)."""
    _, blocks = find_blocks(model)
    was_training = model.training
    model.eval()
    try:
        inputs = capture_inputs(model, calib, batch_size) if calib is not None else None
        for i, block in enumerate(blocks):
            prune_block(i, block, inputs)
            if inputs is not None and i + 1 < len(blocks):
                run_block(block, inputs)
    finally:
        model.train(was_training)

"""Training an LM on token windows: the data of a config, the dense model (trained, or a
``hf:`` model as loaded), masked recovery fine-tuning after pruning, and the
calibration windows the pruning methods read."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from ..registry import PrunekitError
from .blocks import prunable_linears
from .config import LMConfig
from .measure import measure
from .models import build_lm
from .text import TokenData, Tokenizer, load_tokens


def data_for(cfg: LMConfig, tokenizer: Tokenizer) -> TokenData:
    return load_tokens(
        cfg.dataset,
        tokenizer,
        context=cfg.context,
        seed=cfg.seed,
        blocks=cfg.blocks,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        max_chars=cfg.max_chars,
    )


def random_windows(ids: torch.Tensor, n: int, context: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` windows of ``context + 1`` tokens at random offsets of a stream."""
    starts = torch.randint(0, ids.numel() - context, (n,), generator=gen)
    return ids[starts.unsqueeze(1) + torch.arange(context + 1)]


def train_lm(
    model: nn.Module,
    train: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    context: int,
    lr: float,
    weight_decay: float,
    warmup: int,
    seed: int,
    after_step: Any = None,
) -> float:
    """AdamW on random windows, linear warm-up then cosine decay; returns seconds.
    ``after_step()`` runs after every optimizer step (re-applies masks in recovery)."""
    if steps == 0:
        return 0.0
    gen = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
    other = [p for n, p in model.named_parameters() if p.dim() < 2 and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda t: (
            min(1.0, (t + 1) / max(warmup, 1))
            * 0.5
            * (1 + math.cos(math.pi * min(t, steps) / steps))
        ),
    )
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        w = random_windows(train, batch_size, context, gen)
        logits = model(input_ids=w[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten())
        if not torch.isfinite(loss):
            raise PrunekitError(
                f"LM training diverged at step {step} (loss {loss.item()}); lower --lr"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if after_step is not None:
            after_step()
    model.eval()
    return time.perf_counter() - t0


def prepare(cfg: LMConfig) -> tuple[nn.Module, Tokenizer, TokenData]:
    """A fresh (gpt-tiny, seeded) or loaded (hf:) model, its tokenizer and the data."""
    torch.manual_seed(cfg.seed)
    model, tok = build_lm(cfg.model, **cfg.model_args)
    data = data_for(cfg, tok)
    n_pos = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    if n_pos is not None and cfg.context > n_pos:
        raise PrunekitError(f"context {cfg.context} exceeds the model's {n_pos} positions")
    return model, tok, data


def train_dense(cfg: LMConfig) -> tuple[nn.Module, Tokenizer, TokenData, float]:
    model, tok, data = prepare(cfg)
    seconds = 0.0
    if not cfg.model.startswith("hf:"):
        seconds = train_dense_steps(model, data, cfg)
    return model.eval(), tok, data, seconds


def train_dense_steps(model: nn.Module, data: TokenData, cfg: LMConfig) -> float:
    """The dense LM training of ``cfg`` (its steps, batch, context, lr, decay, warm-up and
    seed) on the training split; returns the wall seconds."""
    return train_lm(
        model,
        data.train,
        steps=cfg.train_steps,
        batch_size=cfg.batch_size,
        context=cfg.context,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup=cfg.warmup_steps,
        seed=cfg.seed,
    )


def calibration(data: TokenData, cfg: LMConfig) -> torch.Tensor:
    """``calib_samples`` windows of ``context`` tokens at seeded random offsets of the
    training split (the paper setting: random segments of the training corpus)."""
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    return random_windows(data.train, cfg.calib_samples, cfg.context - 1, gen)


def recover(model: nn.Module, data: TokenData, cfg: LMConfig) -> float:
    """Masked fine-tuning: the pruned zeros are re-zeroed after every step (the mask is
    the zero pattern right after pruning), so the sparsity is unchanged."""
    masks = {name: (m.weight != 0) for name, m in prunable_linears(model).items()}
    layers = prunable_linears(model)

    @torch.no_grad()
    def reapply() -> None:
        for name, keep in masks.items():
            layers[name].weight.mul_(keep)

    return train_lm(
        model,
        data.train,
        steps=cfg.recovery_steps,
        batch_size=cfg.batch_size,
        context=cfg.context,
        lr=cfg.recovery_lr,
        weight_decay=0.0,
        warmup=0,
        seed=cfg.seed + 11,
        after_step=reapply,
    )


def dense_for(cfg: LMConfig) -> tuple[nn.Module, Tokenizer, TokenData, float, dict[str, Any]]:
    """Train (or load) and measure the dense LM once, for :func:`run_lm`'s ``dense``."""
    model, tok, data, seconds = train_dense(cfg)
    return model, tok, data, seconds, measure(model, data, cfg)

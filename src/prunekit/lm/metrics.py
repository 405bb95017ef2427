"""What an LM run measures: perplexity, tokens per second, parameters, nonzeros, bytes.

Perplexity of a token stream ``t_0 .. t_T``: the stream is cut into non-overlapping
windows of ``context + 1`` tokens starting every ``context`` tokens
(:func:`prunekit.lm.text.windows`); inside a window the model sees ``t_i .. t_{i+c-1}``
and predicts ``t_{i+1} .. t_{i+c}``, so each token but the first is predicted once,
with between 0 and ``c - 1`` tokens of left context. Then

    ppl = exp( - (1/N) * sum_k log p(t_k | t_{window start} .. t_{k-1}) )

over all N predicted tokens (the mean negative log-likelihood, in nats, exponentiated).
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn

from .text import windows


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(input_ids=x, use_cache=False).logits


@torch.no_grad()
def nll_sum(model: nn.Module, win: torch.Tensor, batch_size: int = 16) -> tuple[float, int]:
    """(sum of -log p over the predicted tokens, their count) for ``(n, c+1)`` windows."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, win.shape[0], batch_size):
            w = win[i : i + batch_size]
            logits = _logits(model, w[:, :-1]).float()
            logp = torch.log_softmax(logits, dim=-1)
            total -= float(logp.gather(-1, w[:, 1:].unsqueeze(-1)).sum(dtype=torch.float64))
            count += w[:, 1:].numel()
    finally:
        model.train(was_training)
    return total, count


def perplexity(
    model: nn.Module,
    ids: torch.Tensor,
    context: int,
    *,
    max_windows: int | None = None,
    batch_size: int = 16,
) -> float:
    """Perplexity of a 1-D token stream (module docstring)."""
    win = windows(ids, context, max_windows)
    total, count = nll_sum(model, win, batch_size)
    return math.exp(total / count)


@torch.no_grad()
def tokens_per_second(
    model: nn.Module, context: int, vocab_size: int, *, batch_size: int = 8, repeats: int = 5
) -> float:
    """Median throughput of a full forward over ``batch_size x context`` tokens (eval,
    ``no_grad``, one warm-up)."""
    model.eval()
    x = torch.randint(
        0, vocab_size, (batch_size, context), generator=torch.Generator().manual_seed(0)
    )
    _logits(model, x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _logits(model, x)
        times.append(time.perf_counter() - t0)
    return batch_size * context / statistics.median(times)

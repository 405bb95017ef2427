"""Measurement layer: the one place that computes parameters, sparsity, MACs, bytes,
latency and accuracy. Everything else (CLI, result.json, reports) reads from here."""

from .accuracy import accuracy, predict
from .cost import (
    achieved_sparsity,
    effective_tensors,
    eval_mode,
    layer_sparsity,
    macs,
    param_counts,
    size_bytes,
    summary,
)
from .latency import compare_latency, measure_latency

__all__ = [
    "accuracy",
    "achieved_sparsity",
    "compare_latency",
    "effective_tensors",
    "eval_mode",
    "layer_sparsity",
    "macs",
    "measure_latency",
    "param_counts",
    "predict",
    "size_bytes",
    "summary",
]

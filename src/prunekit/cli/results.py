"""The table a finished run prints: accuracy, sparsity, costs, latency and robustness."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def result_table(result: dict[str, Any], title: str) -> Table:
    t = Table(title=title, show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("perplexity (dense, test)", "perplexity_dense", "{:.4f}"),
        ("perplexity (test)", "perplexity", "{:.4f}"),
        ("perplexity (validation)", "val_perplexity", "{:.4f}"),
        ("perplexity / dense", "perplexity_ratio", "{:.4f}"),
        ("tokens per second (dense)", "tokens_per_s_dense", "{:,.0f}"),
        ("tokens per second", "tokens_per_s", "{:,.0f}"),
        ("accuracy (dense)", "accuracy_dense", "{:.4f}"),
        ("accuracy", "accuracy", "{:.4f}"),
        ("target sparsity", "target_sparsity", "{:.4f}"),
        ("achieved sparsity", "achieved_sparsity", "{:.4f}"),
        ("params total", "params_total", "{:,}"),
        ("params total (before shrinking)", "params_total_original", "{:,}"),
        ("params nonzero", "params_nonzero", "{:,}"),
        ("MACs dense", "macs_dense", "{:,}"),
        ("MACs dense (before shrinking)", "macs_dense_original", "{:,}"),
        ("MACs effective", "macs_effective", "{:,}"),
        ("bytes (safetensors)", "size_bytes", "{:,}"),
        ("bytes (gzip)", "size_bytes_gzip", "{:,}"),
        ("accuracy under noise (mean)", "accuracy_corrupted_mean", "{:.4f}"),
    ]
    for label, key, fmt in rows:
        if result.get(key) is not None:
            t.add_row(label, fmt.format(result[key]))
    for bs, ms in (result.get("latency_ms") or {}).items():
        t.add_row(f"latency batch {bs} (ms, median)", f"{ms:.3f}")
        if bs in (result.get("speedup") or {}):
            dense_ms = result["latency_ms_dense"][bs]
            t.add_row(
                f"speed-up batch {bs} (vs dense {dense_ms:.3f} ms, interleaved; "
                "median of per-repeat ratios)",
                f"{result['speedup'][bs]:.2f}x",
            )
    q = result.get("int8") or {}
    if q.get("accuracy_int8") is not None and q.get("bytes_float_onnx_gzip") is not None:
        t.add_row(
            "int8 ONNX bytes, gzip (float ONNX)",
            f"{q['bytes_int8_onnx_gzip']:,} ({q['bytes_float_onnx_gzip']:,})",
        )
        t.add_row(
            "int8 accuracy (same class as PyTorch)",
            f"{q['accuracy_int8']:.4f} ({q['agreement_int8_vs_torch']:.4f})",
        )
        for bs, up in (q.get("speedup_int8_vs_float") or {}).items():
            t.add_row(f"int8 vs float ORT batch {bs} (median of per-repeat ratios)", f"{up:.2f}x")
    for kind in ("accuracy_gaussian", "accuracy_saltpepper"):
        for level, acc in (result.get(kind) or {}).items():
            t.add_row(f"{kind.removeprefix('accuracy_')} {level}", f"{acc:.4f}")
    return t

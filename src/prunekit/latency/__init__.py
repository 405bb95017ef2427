"""Measured latency: tables, a predictor, latency-targeted allocation, depth pruning, int8.

- :mod:`.table`: per-layer latency tables (cached per machine/runtime/batch/threads)
  and the predictor ``T(w) = sum_l t_l + r0 + r1 * A(w)/A_dense``;
- :mod:`.timing` / :mod:`.cache`: how table entries are timed (thread clock, reference
  layer, steady allocator) and cached (median of agreeing passes);
- :mod:`.allocate`: which widths (and blocks) to keep under a latency budget;
- :mod:`.depth`: residual blocks removed whole, ranked by the loss increase;
- :mod:`.target`: the ``--target-speedup`` / ``--target-latency-ms`` pipeline;
- :mod:`.quantize`: int8 ONNX (onnxruntime static quantization).
"""

from .table import LatencyModel, check_runtime, grid, measure_deployed, table_key

__all__ = ["LatencyModel", "check_runtime", "grid", "measure_deployed", "table_key"]

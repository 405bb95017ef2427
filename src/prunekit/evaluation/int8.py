"""The int8 figures of a finished run (``int8: true`` / ``--int8``): pruning + quantization.

The run's model (dead units removed, masks baked in) is exported as float32 ONNX and
quantized to int8 by :func:`prunekit.latency.quantize.int8_onnx` (onnxruntime static
quantization, QDQ, per-channel int8 weights, calibrated on ``CALIBRATION_IMAGES``
validation images, the classifier kept float). Recorded under ``int8`` in result.json:

- bytes: the float and int8 ONNX files, raw and gzip-compressed (level 9, as
  ``size_bytes_gzip``), and the same for the dense model the run was pruned from
  (exported once per dense model, :func:`dense_float_bytes`); the ratios ``x_dense_float`` (float) and ``x_dense_float_int8`` divide this model's gzip
  bytes by that dense float32 model's.
  *Model bytes* in the comparison are the gzip bytes: an ONNX file stores a masked
  (weight-level) model's zeros as zeros, which only compression removes, while a
  neuron-level model is physically smaller in both (the raw bytes are kept beside);
- accuracy on the test split of PyTorch, the float ONNX and the int8 ONNX, and the
  fraction of test images where int8 and PyTorch predict the same class;
- onnxruntime latency float vs int8 per batch size, one thread, timed interleaved
  (:func:`prunekit.evaluation.interleaved.speedup_with_spread` with the thread-CPU
  clock): ``speedup_int8_vs_float`` is the median of the per-repeat ratios float /
  int8, with its interquartile range and a null control (float / a second float
  session) in ``timing``, judged by :class:`prunekit.experiments.claims.Speedup`.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Validation images (training images when there is no validation split) that set the
#: activation ranges of the int8 model.
CALIBRATION_IMAGES = 512


def gzip_size(data: bytes) -> int:
    """Bytes of ``data`` gzip-compressed at level 9 (the ``size_bytes_gzip`` measure)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def deployable(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, bool]:
    """``model`` as it is shipped, and whether ``shrink`` could process it: dead units
    removed where the model's structure allows it (a weight-level model keeps its
    shapes), masks baked in; ``model`` is unchanged. When ``shrink`` fails, the model
    keeps its shapes (masks baked in) and the flag, recorded as ``shrunk``, says so."""
    from ..pruning.masks import clone, finalize
    from ..surgery import shrink

    x = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(1))
    try:
        small, _ = shrink(model, x)
    except Exception:  # a structure shrink cannot follow: the same shapes, masks baked in
        return finalize(clone(model)).eval(), False
    return small.eval(), True


#: Float ONNX bytes (raw, gzip) of the dense models exported so far, by content: the
#: cells of a comparison share their dense model, which is then exported once.
_DENSE_BYTES: dict[tuple, tuple[int, int]] = {}


def dense_float_bytes(reference: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Bytes of the float32 ONNX of the dense ``reference`` as shipped (:func:`deployable`),
    raw and gzip; exported once per model content (its architecture, parameters and
    buffers, bit for bit) and input shape in this process, then reused."""
    from ..distributed import state_digests
    from ..latency.quantize import float_onnx

    shape = tuple(input_shape)
    key = (repr(reference), shape, tuple(sorted(state_digests(reference).items())))
    if key not in _DENSE_BYTES:
        data = float_onnx(deployable(reference, shape)[0], shape)
        _DENSE_BYTES[key] = (len(data), gzip_size(data))
    return _DENSE_BYTES[key]


def int8_metrics(
    model: nn.Module,
    reference: nn.Module | None,
    data: Any,
    input_shape: tuple[int, ...],
    *,
    batch_sizes: tuple[int, ...] = (1, 64),
    repeats: int = 30,
) -> dict[str, Any]:
    """The ``int8`` entry of result.json (module docstring) of ``model``, pruned from the
    dense ``reference`` (None: no dense bytes or ratios); ``data`` is the run's
    :class:`~prunekit.data.Dataset`."""
    return int8_export(
        model, reference, data, input_shape, batch_sizes=batch_sizes, repeats=repeats
    )[1]


def int8_export(
    model: nn.Module,
    reference: nn.Module | None,
    data: Any,
    input_shape: tuple[int, ...],
    *,
    linear: str = "static",
    calibration_images: int = CALIBRATION_IMAGES,
    batch_sizes: tuple[int, ...] = (1, 64),
    repeats: int = 30,
) -> tuple[bytes, dict[str, Any]]:
    """The int8 ONNX file of ``model`` and its ``int8`` entry (:func:`int8_metrics`);
    ``linear`` quantizes Linear layers ``"static"`` (calibrated, the default) or
    ``"dynamic"`` (activation ranges per batch). One entry format for the comparison and
    for ``prunekit export RUN --int8``."""
    from ..latency.quantize import OrtModule, int8_onnx, int8_scores
    from .interleaved import speedup_with_spread

    t0 = time.perf_counter()
    shape = tuple(input_shape)
    small, shrunk = deployable(model, shape)
    split = "val" if len(data.val) else "train"
    calib = getattr(data, split).x[:calibration_images]
    fp32, q8 = int8_onnx(small, shape, calib, linear=linear)
    dense_bytes, dense_gz = (
        dense_float_bytes(reference, shape) if reference is not None else (None, None)
    )
    scores = int8_scores(small, fp32, q8, data.test.x, data.test.y)
    gz = {"float_onnx": gzip_size(fp32), "int8_onnx": gzip_size(q8)}
    timed = speedup_with_spread(
        OrtModule(q8),
        OrtModule(fp32),
        shape,
        batch_sizes,
        repeats=repeats,
        clock=time.thread_time,  # ORT with one thread runs on this thread
    )
    timed["timing"]["clock"] = "thread"
    return q8, {
        "method": "onnxruntime static QDQ: int8 weights per channel, uint8 activations, "
        "classifier float",
        "linear": linear,
        "float_head": True,
        "shrunk": shrunk,
        "calibration_split": split,
        "calibration_images": len(calib),
        "bytes_float_onnx": len(fp32),
        "bytes_int8_onnx": len(q8),
        "bytes_dense_float_onnx": dense_bytes,
        "bytes_float_onnx_gzip": gz["float_onnx"],
        "bytes_int8_onnx_gzip": gz["int8_onnx"],
        "bytes_dense_float_onnx_gzip": dense_gz,
        "x_dense_float": gz["float_onnx"] / dense_gz if dense_gz else None,
        "x_dense_float_int8": gz["int8_onnx"] / dense_gz if dense_gz else None,
        **scores,
        "test_examples": int(len(data.test.y)),
        # pruned = int8, dense = float in speedup_with_spread's terms
        "latency_ms_int8": timed["latency_ms"],
        "latency_ms_float": timed["latency_ms_dense"],
        "speedup_int8_vs_float": timed["speedup"],
        "timing": timed["timing"],
        "seconds": time.perf_counter() - t0,
    }


def export_int8_run(
    run_dir: str | Path,
    onnx_path: str | Path,
    *,
    linear: str = "static",
    calibration_images: int = CALIBRATION_IMAGES,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """``prunekit export RUN --onnx F --int8``: the run's model (dead units removed),
    int8-quantized with ``calibration_images`` of its dataset's validation split
    (training split if none), written to ``onnx_path``; size, latency and accuracy
    (test split) are returned and recorded under ``int8`` in the run's result.json."""
    from ..inference.export import load_shrunk
    from ..latency.quantize import _quant
    from ..storage.atomic import atomic_write_bytes, atomic_write_json
    from ..storage.rundir import RunDir

    rd = RunDir(run_dir)
    saved = rd.result()
    cfg = rd.config(saved)
    _quant()  # onnxruntime's quantizer missing: one line before any work
    model, shape, _ = load_shrunk(rd.path)
    data = rd.dataset(cfg, data_dir=data_dir)
    int8, report = int8_export(
        model, None, data, shape, linear=linear, calibration_images=calibration_images
    )
    atomic_write_bytes(Path(onnx_path), int8)
    before = saved.get("int8") or {}
    # The dense model is not in the run directory: a comparison cell's entry already
    # measured it (same quantizer and calibration), so its dense bytes and ratios stay.
    if before.get("bytes_dense_float_onnx_gzip") and before.get("linear", "static") == linear:
        dense_gz = before["bytes_dense_float_onnx_gzip"]
        report["bytes_dense_float_onnx"] = before.get("bytes_dense_float_onnx")
        report["bytes_dense_float_onnx_gzip"] = dense_gz
        report["x_dense_float"] = report["bytes_float_onnx_gzip"] / dense_gz
        report["x_dense_float_int8"] = report["bytes_int8_onnx_gzip"] / dense_gz
    report = {"path": str(onnx_path), **report}
    saved["int8"] = report
    atomic_write_json(rd.path / "result.json", saved)
    return report

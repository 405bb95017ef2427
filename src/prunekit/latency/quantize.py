"""Pruning + int8: a (shrunk) model as an int8 ONNX model, via onnxruntime.

``int8_onnx(model, input_shape, calibration)``: the float ONNX of the deployed graph
(BatchNorm and the input normalization folded, :func:`prunekit.deploy.rewrite`), then
onnxruntime's post-training quantization (Jacob et al. 2018):

- ``linear="static"`` (default): every Conv and Gemm/MatMul statically quantized, QDQ
  format, int8 weights per output channel (symmetric), uint8 activations whose ranges
  are the min/max observed on the calibration images;
- ``linear="dynamic"``: Convs static as above, Linear layers dynamic (activation range
  computed per batch at run time, int8 weights) -- what onnxruntime recommends for
  Linear-heavy models;
- ``float_head=True`` (default): the last Gemm/MatMul (the classifier, whose outputs
  decide the class) stays float32. Measured on LeNet-5 / Fashion-MNIST (2000 test
  images): int8 and PyTorch predicted the same class on 99.05 % with it quantized
  (MinMax; Percentile 99.15 %, Entropy 99.05 %) and 99.80 % with it float, for 3 % more
  bytes (classes x fan-in x 4).

``x_int8 = round(x / s) + z``; the model's float weights become ``int8`` tensors with
one float scale per channel, so the file is ~4x smaller than float32.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..registry import PrunekitError

LINEAR_MODES = ("static", "dynamic")


def _quant() -> Any:
    try:
        import onnx  # noqa: F401  (the quantizer reads and writes ONNX graphs)
        import onnxruntime.quantization as q
    except ImportError:
        raise PrunekitError(
            "int8 export needs onnx and onnxruntime: pip install 'prunekit[onnx]'"
        ) from None
    return q


def require_int8() -> None:
    """Raise the one-line error of a missing onnx/onnxruntime now (before training)."""
    _quant()


def float_onnx(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """The float32 ONNX that :func:`int8_onnx` quantizes: BatchNorm and the input
    normalization folded into the deployed graph (so a dense model's float file and
    its int8 file describe the same computation)."""
    from ..inference.deploy import rewrite
    from ..inference.export import onnx_bytes
    from ..surgery import fold_batchnorm

    folded, _ = fold_batchnorm(model)
    gm, _ = rewrite(folded, tuple(input_shape))
    return onnx_bytes(gm, tuple(input_shape))


def int8_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    calibration: torch.Tensor,
    *,
    linear: str = "static",
    batch: int = 64,
    float_head: bool = True,
) -> tuple[bytes, bytes]:
    """``(float_onnx, int8_onnx)`` of ``model`` (module docstring); ``calibration``:
    images ``(N, *input_shape)`` in the model's input range."""
    if linear not in LINEAR_MODES:
        raise PrunekitError(f"linear must be one of {', '.join(LINEAR_MODES)}, got {linear!r}")
    if calibration.dim() != len(input_shape) + 1 or len(calibration) == 0:
        raise PrunekitError("calibration must be a non-empty batch of model inputs")
    q = _quant()
    fp32 = float_onnx(model, input_shape)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [
                    {"input": calibration[i : i + batch].numpy()}
                    for i in range(0, len(calibration), batch)
                ]
            )

        def get_next(self):
            return next(self.batches, None)

    convs = ["Conv"] if linear == "dynamic" else ["Conv", "Gemm", "MatMul"]
    exclude = _last_linear(fp32) if float_head else []
    # onnxruntime's quantizer logs advice ("consider pre-processing") on the root logger
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src, mid, dst = (Path(tmp) / n for n in ("f.onnx", "s.onnx", "q.onnx"))
        src.write_bytes(fp32)
        q.quantize_static(
            str(src),
            str(mid),
            Reader(),
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=convs,
            nodes_to_exclude=exclude,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
        )
        if linear == "dynamic":
            q.quantize_dynamic(
                str(mid),
                str(dst),
                op_types_to_quantize=["Gemm", "MatMul"],
                nodes_to_exclude=exclude,
                weight_type=q.QuantType.QInt8,
            )
        else:
            dst = mid
        return fp32, dst.read_bytes()


def _last_linear(model: bytes) -> list[str]:
    import onnx

    nodes = onnx.load_from_string(model).graph.node
    names = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    return names[-1:]


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def session(data: bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def predict(sess: Any, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    name = sess.get_inputs()[0].name
    out = [sess.run(None, {name: x[i : i + batch].numpy()})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out)


class OrtModule(nn.Module):
    """An onnxruntime session timed like a module (for table.compare)."""

    def __init__(self, data: bytes, threads: int = 1) -> None:
        super().__init__()
        self.data, self.threads = data, threads
        self.sess = session(data, threads)
        self.name = self.sess.get_inputs()[0].name
        self.dummy = nn.Parameter(torch.zeros(1))  # the timer's input dtype/device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.sess.run(None, {self.name: x.numpy()})[0])

    def __deepcopy__(self, memo: dict) -> OrtModule:
        # A session cannot be copied: the copy is a new session of the same model (the
        # null control of the interleaved timing times it beside the original).
        return OrtModule(self.data, self.threads)


def int8_scores(
    model: nn.Module, fp32: bytes, int8: bytes, test_x: torch.Tensor, test_y: torch.Tensor
) -> dict[str, float]:
    """Test accuracy of ``model`` (PyTorch, put in eval mode), of its float ONNX ``fp32``
    and of its int8 ONNX ``int8``, and the fraction of test images where int8 and PyTorch
    predict the same class."""
    model.eval()
    with torch.no_grad():
        out = [model(test_x[i : i + 256]).argmax(1) for i in range(0, len(test_x), 256)]
    torch_pred = torch.cat(out).numpy()
    q_pred = predict(session(int8), test_x).argmax(1)
    f_pred = predict(session(fp32), test_x).argmax(1)
    y = test_y.numpy()
    return {
        "accuracy_torch": float((torch_pred == y).mean()),
        "accuracy_float_onnx": float((f_pred == y).mean()),
        "accuracy_int8": float((q_pred == y).mean()),
        "agreement_int8_vs_torch": float((q_pred == torch_pred).mean()),
    }


# Not int8_export: latency_target.py's raw JSON has these keys (no shrink, ratio of medians).
def int8_report(
    model: nn.Module,
    input_shape: tuple[int, ...],
    calibration: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    linear: str = "static",
    float_head: bool = True,
    batch_sizes: tuple[int, ...] = (1, 64),
    repeats: int = 15,
    clock: str = "thread",
) -> tuple[bytes, dict[str, Any]]:
    """The int8 bytes and its figures: bytes (float and int8 ONNX), test accuracy of
    PyTorch / float ONNX / int8 ONNX, the fraction of test images where int8 and
    PyTorch predict the same class, and ORT latency (float vs int8, interleaved, one
    thread, ``clock`` as in :mod:`.table`) per batch size."""
    from .table import compare

    fp32, int8 = int8_onnx(model, input_shape, calibration, linear=linear, float_head=float_head)
    scores = int8_scores(model, fp32, int8, test_x, test_y)
    latency = {}
    for b in batch_sizes:
        ms = compare(
            {"float": OrtModule(fp32), "int8": OrtModule(int8)},
            tuple(input_shape),
            b,
            clock=clock,
            repeats=repeats,
            threads=1,
        )
        latency[str(b)] = ms
    return int8, {
        "linear": linear,
        "float_head": float_head,
        "clock": clock,
        "bytes_float_onnx": len(fp32),
        "bytes_int8_onnx": len(int8),
        **scores,
        "latency_ms_onnxruntime": latency,
        "speedup_int8_vs_float": {b: v["float"] / v["int8"] for b, v in latency.items()},
    }

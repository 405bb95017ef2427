"""ONNX export of a (shrunk) model, checked against PyTorch in onnxruntime.

``torch.onnx.export`` in torch >= 2.9 defaults to the torch.export-based ("dynamo")
exporter, which needs the ``onnxscript`` package; prunekit uses the TorchScript
exporter (``dynamo=False``), which needs only ``onnx`` and works offline. The batch
dimension is dynamic, so one file serves every batch size.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..evaluation.cost import eval_mode
from ..registry import PrunekitError
from ..storage.atomic import atomic_write_bytes
from ..storage.modelfile import read_model_json
from ..storage.saving import load

OPSET = 17


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise PrunekitError(
            "ONNX export needs onnx and onnxruntime: pip install 'prunekit[onnx]'"
        ) from None
    return onnxruntime


def onnx_max_abs_diff(onnx_bytes: bytes, model: nn.Module, x: torch.Tensor) -> float:
    """``max |onnxruntime(x) - model(x)|`` over all outputs, model in eval mode."""
    ort = _onnxruntime()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with eval_mode(model), torch.no_grad():
        ref = model(x).numpy()
    return float(np.abs(got - ref).max())


def onnx_bytes(
    model: nn.Module,
    input_shape: tuple[int, ...],
    x: torch.Tensor | None = None,
    opset: int = OPSET,
) -> bytes:
    """``model`` in eval mode as a serialized ONNX model (batch dimension dynamic)."""
    if x is None:
        x = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (x,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    return buf.getvalue()


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_shape: tuple[int, ...],
    *,
    opset: int = OPSET,
    check: bool = True,
    atol: float = 1e-4,
    batch_size: int = 2,
) -> dict[str, Any]:
    """Write ``model`` (eval mode, batch dim dynamic) to ``path`` as ONNX; with ``check``
    compare onnxruntime's outputs with PyTorch's on a seeded random batch of
    ``(batch_size, *input_shape)`` and raise :class:`PrunekitError` (writing nothing) if
    they differ by more than ``atol``. Returns ``{"path", "opset", "max_abs_diff", "bytes"}``."""
    _onnxruntime()
    x = torch.rand((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
    data = onnx_bytes(model, input_shape, x, opset)
    diff = onnx_max_abs_diff(data, model, x) if check else None
    if diff is not None and not diff <= atol:
        raise PrunekitError(f"ONNX outputs differ from PyTorch's by {diff:.3g} (> {atol})")
    atomic_write_bytes(Path(path), data)
    return {"path": str(path), "opset": opset, "max_abs_diff": diff, "bytes": len(data)}


def load_shrunk(run_dir: str | Path, round_to: int = 1) -> tuple[nn.Module, tuple, dict]:
    """A saved run's model with its dead units removed (widths rounded up to ``round_to``),
    its input shape (from model.json) and the kept units per layer."""
    from ..surgery import shrink

    run_dir = Path(run_dir)
    model = load(run_dir)
    shape = tuple(read_model_json(run_dir / "model.json").get("input_shape") or ())
    if not shape:
        raise PrunekitError(f"{run_dir / 'model.json'} has no input_shape")
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(1))
    model, info = shrink(model, x, round_to=round_to)
    return model, shape, info["units"]


def export_run(
    run_dir: str | Path,
    onnx_path: str | Path,
    *,
    fold_bn: bool = False,
    round_to: int = 1,
    check: bool = True,
) -> dict[str, Any]:
    """Export a saved run: load it, remove its dead units (``shrink``, padding widths
    to a multiple of ``round_to``), optionally fold BatchNorm, write and check ONNX."""
    from ..surgery import fold_batchnorm

    model, shape, units = load_shrunk(run_dir, round_to)
    folded: list[str] = []
    if fold_bn:
        model, folded = fold_batchnorm(model)
    out = export_onnx(model, onnx_path, shape, check=check)
    return {**out, "units": units, "folded_batchnorm": folded}

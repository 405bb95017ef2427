"""ONNX export of shrunk models: onnxruntime matches PyTorch (atol 1e-4), any batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import prunekit
from prunekit import PrunekitError, create_model
from prunekit.cli import main
from prunekit.inference.export import export_onnx, export_run
from prunekit.storage.modelfile import save_model
from prunekit.surgery import shrink

ort = pytest.importorskip("onnxruntime")

SHAPES = {
    "lenet300": (1, 28, 28),
    "lenet5": (1, 28, 28),
    "seedcnn": (1, 28, 28),
    "resnet20": (3, 32, 32),
}


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


@torch.no_grad()
def torch_out(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return model.eval()(x).numpy()


def pruned(name: str) -> nn.Module:
    model = create_model(name)
    for m in model.modules():  # BN statistics that matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")


@pytest.mark.parametrize("name", list(SHAPES))
def test_shrunk_zoo_model_onnx_matches_torch(name: str, tmp_path: Path) -> None:
    shape = SHAPES[name]
    small, _ = shrink(pruned(name), torch.rand(2, *shape))
    info = export_onnx(small, tmp_path / "m.onnx", shape)
    assert info["max_abs_diff"] <= 1e-4 and info["opset"] == 17
    x = torch.rand(5, *shape)  # another batch size: the batch axis is dynamic
    np.testing.assert_allclose(
        run_onnx(tmp_path / "m.onnx", x), torch_out(small, x), rtol=0, atol=1e-4
    )


def saved_run(tmp_path: Path, name: str = "resnet20") -> Path:
    out = tmp_path / "run"
    save_model(out, pruned(name), {"name": name, "kwargs": {}, "input_shape": list(SHAPES[name])})
    return out


def test_export_run_folds_bn_rounds_widths_and_matches(tmp_path: Path) -> None:
    run_dir = saved_run(tmp_path)
    info = export_run(run_dir, tmp_path / "r.onnx", fold_bn=True, round_to=16)
    assert len(info["folded_batchnorm"]) == 21
    assert info["units"]["conv1"] == 16 and info["units"]["layer1.0.conv1"] == 16  # 8 -> 16
    assert info["units"]["layer3.0.conv1"] == 32 and info["units"]["fc"] == 10
    x = torch.rand(3, 3, 32, 32)
    np.testing.assert_allclose(
        run_onnx(tmp_path / "r.onnx", x), torch_out(prunekit.load(run_dir), x), rtol=0, atol=1e-4
    )


def test_cli_export_and_bad_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = saved_run(tmp_path, "lenet5")
    with pytest.raises(SystemExit) as done:
        main(["export", str(run_dir), "--onnx", str(tmp_path / "l.onnx")])
    assert done.value.code in (0, None)
    assert (tmp_path / "l.onnx").stat().st_size > 0
    with pytest.raises(SystemExit) as failed:
        main(["export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "x.onnx")])
    assert failed.value.code == 2 and "not a directory" in capsys.readouterr().err
    with pytest.raises(PrunekitError, match="round_to must be >= 1"):
        export_run(run_dir, tmp_path / "y.onnx", round_to=0)
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()

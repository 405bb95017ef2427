"""``prunekit compare --int8`` exports the dense model every cell is compared with once
per dense model, and every cell's dense bytes are those of a fresh export of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_COMPARISON

from prunekit.evaluation import int8 as int8_mod
from prunekit.experiments import compare, read_rows
from prunekit.experiments.plan import config_from_dict, restrict
from prunekit.latency import quantize
from prunekit.storage.saving import load

pytest.importorskip("onnxruntime")

TWO_CELLS = {
    **TINY_COMPARISON,
    "methods": ["magnitude", "l1-filter"],
    "sparsities": [0.5],
    "dense_baseline": False,
}


def test_two_cells_export_the_dense_model_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(int8_mod, "_DENSE_BYTES", {})  # nothing exported before
    exported = []
    real = quantize.float_onnx

    def counting(model, shape):
        exported.append(model)
        return real(model, shape)

    monkeypatch.setattr(quantize, "float_onnx", counting)
    cfg = restrict(config_from_dict(TWO_CELLS), int8=True)
    outcome = compare(cfg, tmp_path, config_yaml=yaml.safe_dump(TWO_CELLS), progress=False)
    assert outcome.ran == 2 and outcome.failed == 0
    # one float export per cell (its own int8 is quantized from it), one for the dense model
    assert len(exported) == 2 + 1 and len(int8_mod._DENSE_BYTES) == 1
    monkeypatch.undo()

    # the figures are those of the dense model exported afresh (stored by the comparison)
    (dense_dir,) = (tmp_path / "dense").iterdir()
    dense = load(dense_dir).eval()
    shape = tuple(json.loads((dense_dir / "model.json").read_text())["input_shape"])
    data = quantize.float_onnx(int8_mod.deployable(dense, shape)[0], shape)
    rows = read_rows(tmp_path)
    assert {r["method"] for r in rows} == {"magnitude", "l1-filter"}
    for r in rows:
        q = r["int8"]
        assert q["bytes_dense_float_onnx"] == len(data)
        assert q["bytes_dense_float_onnx_gzip"] == int8_mod.gzip_size(data)
        assert q["x_dense_float"] == q["bytes_float_onnx_gzip"] / int8_mod.gzip_size(data)
        assert q["x_dense_float_int8"] == q["bytes_int8_onnx_gzip"] / int8_mod.gzip_size(data)


def test_a_changed_dense_model_is_exported_again(monkeypatch) -> None:
    """The reuse is by content: the same weights reuse the entry, other weights do not."""
    import torch
    from torch import nn

    monkeypatch.setattr(int8_mod, "_DENSE_BYTES", {})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    first = int8_mod.dense_float_bytes(model, (1, 4, 4))
    assert int8_mod.dense_float_bytes(model, (1, 4, 4)) == first
    assert len(int8_mod._DENSE_BYTES) == 1
    with torch.no_grad():
        model[1].weight.mul_(2.0)
    int8_mod.dense_float_bytes(model, (1, 4, 4))
    assert len(int8_mod._DENSE_BYTES) == 2

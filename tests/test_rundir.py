"""The run directory has one owner (prunekit.storage.rundir.RunDir) and the calibration set one
definition (prunekit.data.calibration_set): saving, reloading and the entropy export go
through them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunekit.config import RunConfig
from prunekit.data import CALIBRATION_EXAMPLES, calibration_set, load_dataset
from prunekit.errors import PrunekitError
from prunekit.models import create_model
from prunekit.storage.rundir import RunDir


def _mlp_arch() -> dict:
    return {"name": "lenet300", "kwargs": {"input_size": 12, "hidden": [16, 8]}}


def test_save_then_read_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    arch = _mlp_arch()
    model = create_model(arch["name"], **arch["kwargs"]).eval()
    cfg = RunConfig(model="lenet300", dataset="digits", sparsity=0.5, limit=100)
    run = RunDir(tmp_path / "r")
    written = run.save({"accuracy": 0.5, "config": cfg.to_dict()}, model, arch)
    assert set(written["checksums"]) == {"model.safetensors", "model.json"}
    assert run.result() == json.loads((tmp_path / "r" / "result.json").read_text()) == written
    assert run.config() == cfg
    again = run.model()
    x = torch.rand(3, 1, 12, 12)
    assert torch.equal(again(x), model(x))


def test_unreadable_result_is_one_clear_error(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(PrunekitError, match="result.json is missing or corrupted"):
        run.result()
    (tmp_path / "result.json").write_text("[1, 2]")
    with pytest.raises(PrunekitError, match="result.json is missing or corrupted"):
        run.config()
    (tmp_path / "result.json").write_text(json.dumps({"no": "config"}))
    with pytest.raises(PrunekitError, match="result.json is missing or corrupted"):
        run.config()


def test_calibration_set_is_the_first_validation_examples() -> None:
    data = load_dataset("digits", limit=800, seed=3)
    x, y = calibration_set(data)
    assert CALIBRATION_EXAMPLES == 512
    assert len(data.val) > 0 and len(x) == min(512, len(data.val))
    assert torch.equal(x, data.val.x[:512]) and torch.equal(y, data.val.y[:512])
    no_val = load_dataset("digits", limit=800, seed=3, val_fraction=0.0)
    assert len(no_val.val) == 0
    assert torch.equal(calibration_set(no_val, 7)[0], no_val.train.x[:7])

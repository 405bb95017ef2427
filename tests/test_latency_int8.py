"""Pruning + int8: ``prunekit export RUN --onnx F --int8`` and the latency-target CLI."""

from __future__ import annotations

import json

import pytest
from conftest import small_run_config

from prunekit.cli import main
from prunekit.pipeline import run

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def pruned_lenet5(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = small_run_config(
        model="lenet5", method="l1-filter", sparsity=0.5, epochs=2, finetune_epochs=1
    )
    run(cfg, out=out)
    return out


@pytest.mark.parametrize("linear", ["static", "dynamic"])
def test_int8_export_agrees_with_torch(pruned_lenet5, tmp_path, linear, capsys):
    f = tmp_path / "q.onnx"
    with pytest.raises(SystemExit) as e:
        main(["export", str(pruned_lenet5), "--onnx", str(f), "--int8", "--int8-linear", linear])
    assert e.value.code in (0, None)
    q = json.loads((pruned_lenet5 / "result.json").read_text())["int8"]
    assert q["linear"] == linear and q["bytes_int8_onnx"] == f.stat().st_size
    assert q["bytes_int8_onnx"] < 0.35 * q["bytes_float_onnx"]  # int8 weights, fp32 scales
    assert q["agreement_int8_vs_torch"] >= 0.99 and q["float_head"] is True
    assert abs(q["accuracy_int8"] - q["accuracy_torch"]) <= 0.01
    # the comparison's entry format: interleaved ORT timings with their spread
    assert set(q["latency_ms_int8"]) == set(q["speedup_int8_vs_float"]) == {"1", "64"}
    assert q["bytes_int8_onnx_gzip"] < q["bytes_float_onnx_gzip"]
    assert "same class as torch" in capsys.readouterr().out


def test_int8_bad_linear_mode(pruned_lenet5, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "export",
                str(pruned_lenet5),
                "--onnx",
                str(tmp_path / "q"),
                "--int8",
                "--int8-linear",
                "fp16",
            ]
        )
    assert e.value.code == 2
    assert "linear must be one of static, dynamic" in capsys.readouterr().err


def test_cli_target_errors_are_one_line(capsys, tmp_path):
    base = ["prune", "--model", "lenet5", "--dataset", "synthetic", "--limit", "200", "-q"]
    for extra, message in [
        (["--target-speedup", "2", "--runtime", "tensorrt"], "unknown runtime"),
        (["--target-speedup", "2", "--method", "magnitude"], "structured method"),
        (["--target-speedup", "2", "--target-latency-ms", "3"], "exactly one"),
        (["--target-speedup", "2", "--depth", "only"], "no residual blocks"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(base + extra)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_cli_target_speedup_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(
            [
                "prune",
                "--model",
                "lenet5",
                "--dataset",
                "synthetic",
                "--limit",
                "300",
                "--epochs",
                "1",
                "--finetune-epochs",
                "1",
                "--latency-repeats",
                "1",
                "--eval-sigmas",
                "",
                "--eval-densities",
                "",
                "--target-speedup",
                "1.5",
                "--latency-batch",
                "8",
                "--out",
                str(out),
                "-q",
            ]
        )
    assert e.value.code in (0, None)
    s = json.loads((out / "result.json").read_text())["latency_target"]
    assert s["target_speedup"] == 1.5 and s["measured_speedup"] > 1.0
    assert {"predicted_speedup", "prediction_error", "widths", "calibration"} <= set(s)
    assert "measured" in capsys.readouterr().out

"""Commands on a saved run directory: ``eval``, ``entropy`` and ``export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .results import result_table
from .root import DataDir, app, out_console


@app.command("eval")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by prunekit.")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Reload a saved run (safetensors + JSON only) and evaluate it again."""
    from ..pipeline import evaluate_saved

    if (run_dir / "hf" / "config.json").is_file():  # a language model (prunekit.lm)
        from ..lm.reload import evaluate_saved_lm

        result = evaluate_saved_lm(run_dir)
    else:
        result = evaluate_saved(run_dir, data_dir=data_dir)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        out_console.print(result_table(result, f"{run_dir}"))


@app.command("entropy")
def entropy_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by prunekit.")],
    out: Annotated[
        Path, typer.Option(help="JSON file to write ({layer: [H_j ...]} under 'entropy').")
    ],
    entropy_estimator: Annotated[str, typer.Option(help="histogram | gaussian.")] = "histogram",
    bins: Annotated[int, typer.Option(help="Histogram bins.")] = 32,
    calibration_batches: Annotated[
        int | None, typer.Option(help="Batches of 256 calibration images (default: all).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Export the per-unit activation entropies (nats) of a saved run's model."""
    from ..evaluation.entropy_export import run_unit_entropies
    from ..storage.atomic import atomic_write_json

    report = run_unit_entropies(
        run_dir,
        estimator=entropy_estimator,
        bins=bins,
        batches=calibration_batches,
        data_dir=data_dir,
    )
    atomic_write_json(out, report)
    units = sum(len(v) for v in report["entropy"].values())
    out_console.print(
        f"{units} unit entropies ({entropy_estimator}) of {len(report['entropy'])} "
        f"layers written to {out}"
    )


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by prunekit.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
    fold_bn: Annotated[
        bool, typer.Option("--fold-bn", help="Fold BatchNorm into the conv before it.")
    ] = False,
    round_to: Annotated[
        int,
        typer.Option(
            "--round-to",
            help="Keep a multiple of this many units per layer group (zero units are added).",
        ),
    ] = 1,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="Also apply prunekit.deploy's exact rewrites: fold BatchNorm and the input "
            "normalization, move ReLU after max-pool.",
        ),
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Write an int8 ONNX model (onnxruntime static quantization, calibrated on "
            "512 validation images; BN and normalization folded first).",
        ),
    ] = False,
    int8_linear: Annotated[
        str, typer.Option(help="With --int8: Linear layers 'static' or 'dynamic'.")
    ] = "static",
) -> None:
    """Export a saved run to ONNX (dead units removed), checked in onnxruntime (atol 1e-4)."""
    if int8:
        from ..evaluation.int8 import export_int8_run

        q = export_int8_run(run_dir, onnx, linear=int8_linear)
        out_console.print(
            f"wrote {q['path']} (int8, {q['bytes_int8_onnx']:,} bytes; float ONNX "
            f"{q['bytes_float_onnx']:,}); test accuracy int8 {q['accuracy_int8']:.4f} vs torch "
            f"{q['accuracy_torch']:.4f}; same class as torch on "
            f"{100 * q['agreement_int8_vs_torch']:.2f} % of test images; recorded in result.json"
        )
        return
    if deploy:
        from ..inference.deploy import export_deployed

        info = export_deployed(run_dir, onnx, round_to=round_to)
    else:
        from ..inference.export import export_run

        info = export_run(run_dir, onnx, fold_bn=fold_bn, round_to=round_to)
    out_console.print(
        f"wrote {info['path']} ({info['bytes']:,} bytes, opset {info['opset']}); "
        f"max |onnxruntime - torch| = {info['max_abs_diff']:.2g}; "
        f"folded {len(info['folded_batchnorm'])} BatchNorm"
        + (
            f", {len(info['normalize_folded'])} Normalize; "
            f"{len(info['relu_maxpool_swapped'])} ReLU moved after max-pool"
            if deploy
            else ""
        )
    )

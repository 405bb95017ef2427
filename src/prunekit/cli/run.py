"""``prunekit train`` and ``prunekit prune``: a run from flags and a config file, handed
to the pipeline, the language-model run or the latency target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ..registry import PrunekitError
from .results import result_table
from .root import ConfigFile, Out, Overwrite, Quiet, app, out_console
from .runflags import run_options


def _load_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PrunekitError(f"cannot read config {path}: {e}") from None
    if not isinstance(data, dict):
        raise PrunekitError(f"config {path} must be a mapping of options")
    return data


def _run_pipeline(values: dict[str, Any], out: Path | None, overwrite: bool, quiet: bool) -> None:
    from ..config import RunConfig
    from ..pipeline import run

    cfg = RunConfig.from_dict(values)
    result = run(cfg, out=out, overwrite=overwrite, progress=not quiet).result
    from ..distributed import is_main

    if not is_main():  # under torchrun only rank 0 evaluates, saves and prints
        return
    out_console.print(result_table(result, f"{cfg.model} / {cfg.dataset} / {result['method']}"))
    if out is not None:
        out_console.print(f"saved to {out}")


def _run_lm(values: dict[str, Any], out: Path | None, overwrite: bool, quiet: bool) -> None:
    from ..lm import LMConfig, run_lm

    cfg = LMConfig.from_dict(values)
    result = run_lm(cfg, out=out, overwrite=overwrite).result
    out_console.print(result_table(result, f"{cfg.model} / {cfg.dataset} / {result['method']}"))
    if out is not None:
        out_console.print(f"saved to {out} (transformers format under {out / 'hf'})")


#: Run options of the pruning phase: `train` (a dense run) has no use for them.
_PRUNING_OPTIONS = (
    "method",
    "sparsity",
    "granularity",
    "scope",
    "schedule",
    "finetune_epochs",
    "finetune_lr",
    "method_args",
    "shrink",
    "recalibrate_bn",
)


@app.command()
@run_options(exclude=_PRUNING_OPTIONS)
def train(
    run: dict[str, Any],
    out: Out = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a dense model and evaluate it (a run with no pruning)."""
    _run_pipeline(
        {**run, "method": "dense", "sparsity": 0.0, "finetune_epochs": 0}, out, overwrite, quiet
    )


@app.command()
@run_options()
def prune(
    run: dict[str, Any],
    lam: Annotated[
        float | None, typer.Option("--lambda", help="Penalty strength of the method's objective.")
    ] = None,
    cycles: Annotated[
        int | None, typer.Option(help="Prune/fine-tune cycles (iterative schedule).")
    ] = None,
    noise_sigma: Annotated[
        float | None,
        typer.Option(help="Gaussian noise std (inputs in [0, 1]) for the gaussian method."),
    ] = None,
    noise_density: Annotated[
        float | None,
        typer.Option(help="Salt-and-pepper density in [0, 1] for the saltpepper method."),
    ] = None,
    calibration_batches: Annotated[
        int | None, typer.Option(help="Batches of data used by data-driven criteria (entropy).")
    ] = None,
    entropy_estimator: Annotated[
        str | None, typer.Option(help="histogram | gaussian (entropy criterion).")
    ] = None,
    nm: Annotated[
        str | None,
        typer.Option(
            help="N:M pattern for --granularity nm, e.g. 2:4; it fixes the sparsity at 1-N/M (omit --sparsity)."
        ),
    ] = None,
    target_speedup: Annotated[
        float | None,
        typer.Option(
            help="Prune a structured method to this MEASURED speed-up (latency tables, "
            "see prunekit.latency); --sparsity is then unused."
        ),
    ] = None,
    target_latency_ms: Annotated[
        float | None,
        typer.Option(help="Like --target-speedup, as a latency in ms per batch."),
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(help="Runtime the latency target holds in: eager | compile | onnxruntime."),
    ] = "eager",
    latency_batch: Annotated[
        int, typer.Option(help="Batch size the latency target is measured at.")
    ] = 64,
    depth: Annotated[
        str,
        typer.Option(help="Residual blocks for a latency target: none | only | with (widths)."),
    ] = "none",
    config: ConfigFile = None,
    out: Out = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train dense -> prune to --sparsity with --method -> fine-tune -> evaluate -> save."""
    values = _load_config_file(config)
    given = dict(run)
    option_args = given.pop("method_args", {})
    values.update(given)
    from ..config import check_values

    values = check_values(values)  # a wrongly typed config value: one line, here
    method_args = dict(values.get("method_args") or {})
    named = {
        "lam": lam,
        "cycles": cycles,
        "sigma": noise_sigma,
        "density": noise_density,
        "calibration_batches": calibration_batches,
        "estimator": entropy_estimator,
    }
    method_args.update({k: v for k, v in named.items() if v is not None})
    if nm is not None:
        n_str, sep, m_str = nm.partition(":")
        if not sep or not n_str.isdigit() or not m_str.isdigit():
            raise PrunekitError(f"--nm takes N:M with whole numbers, e.g. 2:4; got {nm!r}")
        method_args.update(n=int(n_str), m=int(m_str))
    method_args.update(option_args)  # -o KEY=VALUE wins over the named shortcuts
    values["method_args"] = method_args
    from ..lm import is_lm_config

    if is_lm_config(values):  # gpt-tiny, hf:PATH or a text corpus: the LM run (prunekit.lm)
        _run_lm(values, out, overwrite, quiet)
        return
    if "sparsity" not in values:  # an N:M pattern fixes the sparsity at 1 - N/M
        from ..pruning.granularity import implied_sparsity
        from ..pruning.methods import get_method

        gran = (
            values.get("granularity") or get_method(values.get("method", "magnitude")).granularity
        )
        implied = implied_sparsity(gran, method_args)
        if implied is not None:
            values["sparsity"] = implied
    if target_speedup is not None or target_latency_ms is not None:
        _run_target(
            values,
            out,
            overwrite,
            quiet,
            target_speedup,
            target_latency_ms,
            runtime,
            latency_batch,
            depth,
        )
        return
    _run_pipeline(values, out, overwrite, quiet)


def _run_target(values, out, overwrite, quiet, speedup, latency_ms, runtime, batch, depth):
    from ..config import RunConfig
    from ..latency.target import Target, run_target

    values.setdefault("method", "l1-filter")
    values["sparsity"] = 0.0  # the latency target decides how much goes
    target = Target(
        speedup=speedup, latency_ms=latency_ms, runtime=runtime, batch_size=batch, depth=depth
    )
    target.check()  # one-line errors before the data is read
    cfg = RunConfig.from_dict(values)
    result = run_target(cfg, target, out=out, overwrite=overwrite, progress=not quiet).result
    out_console.print(result_table(result, f"{cfg.model} / {cfg.dataset} / {result['method']}"))
    s = result["latency_target"]
    out_console.print(
        f"latency target ({s['runtime']}, batch {s['batch_size']}): goal {s['goal_speedup']:.2f}x, "
        f"predicted {s['predicted_speedup']:.2f}x, measured {s['measured_speedup']:.2f}x"
    )
    if out is not None:
        out_console.print(f"saved to {out}")

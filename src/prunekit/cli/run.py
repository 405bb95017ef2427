"""``prunekit train`` and ``prunekit prune``: a run from flags and a config file, handed
to the pipeline, the language-model run or the latency target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..registry import PrunekitError
from .extraflags import SHORTCUTS, TARGET_FLAGS, extra_flags, method_args_of, target_of
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
@extra_flags(SHORTCUTS, TARGET_FLAGS)
def prune(
    run: dict[str, Any],
    extra: dict[str, Any],
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
    method_args.update(method_args_of(extra))
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
    target = target_of(extra)
    if target is not None:
        _run_target(values, out, overwrite, quiet, target)
        return
    _run_pipeline(values, out, overwrite, quiet)


def _run_target(values, out, overwrite, quiet, fields: dict[str, Any]):
    from ..config import RunConfig
    from ..latency.target import Target, run_target

    values.setdefault("method", "l1-filter")
    values["sparsity"] = 0.0  # the latency target decides how much goes
    target = Target(**fields)
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

"""The run options as typer flags, generated from the ``RunConfig`` schema
(:mod:`prunekit.runoptions`): one flag per field with its default shown in ``--help``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..runoptions import BY_NAME, RUN_OPTIONS, RunOption

_CLI_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": str,  # "0.1,0.2": parsed by RunOption.parse
    "dict": list[str],  # -o KEY=VALUE, repeatable
}


def _run_parameter(o: RunOption) -> inspect.Parameter:
    """A typer option for one RunConfig field. Its default is None (= not given), so a
    --config file's value is not overwritten by a flag nobody typed; --help shows the
    schema's default instead. Values are checked by RunConfig (one-line errors)."""
    decls = [f"{o.flag}/{o.negative}"] if o.kind == "bool" else [o.flag, o.short]
    info = typer.Option(
        *[d for d in decls if d],
        # Written into the help: click puts a text default in parentheses.
        help=f"{o.help_text()}  [default: {o.default_text()}]",
        show_default=False,
        metavar=o.metavar(),
    )
    annotation = Annotated[_CLI_TYPES[o.kind] | None, info]
    return inspect.Parameter(
        o.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def run_options(
    *, exclude: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per RunConfig field (but ``exclude``), generated from
    the schema. The command's own parameters are the options that are not run options
    (paths, --quiet ...); it receives the run options given on the command line as
    ``run``: ``{field: value}``, typed, lists and ``-o`` parsed, absent ones left out."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.name != "run"
        ]
        generated = [_run_parameter(o) for o in RUN_OPTIONS if o.name not in exclude]
        clash = {p.name for p in own} & {p.name for p in generated}
        if clash:
            raise TypeError(f"{func.__name__}: parameters shadow run options {sorted(clash)}")

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            given = {p.name: BY_NAME[p.name].parse(kwargs.pop(p.name)) for p in generated}
            return func(run={k: v for k, v in given.items() if v is not None}, **kwargs)

        params = generated + own
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap

"""The typer app every command registers on, the consoles it prints to, and the
options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help texts are plain text: with rich markup on, "[default: 0.9]" is eaten as a tag.
    rich_markup_mode=None,
    help="Prune PyTorch models and compare pruning methods honestly.",
)
out_console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        out_console.print(f"prunekit {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version, exit."
        ),
    ] = False,
) -> None:
    """Prune PyTorch models and compare pruning methods honestly."""


Out = Annotated[Path | None, typer.Option(help="Run directory to write.")]
Overwrite = Annotated[bool, typer.Option(help="Replace a different run already in --out.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DataDir = Annotated[Path | None, typer.Option(help="Directory with the dataset's IDX files.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="YAML file of options; flags given on the command line win."),
]

"""The entry point: the comparison's commands registered, then ``main``, which runs the
app and turns every user error into one ``error:`` line and exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from ..experiments.commands import compare_cmd, report_cmd
from ..registry import PrunekitError
from .root import app, err_console, out_console

# The comparison harness's commands live with it (prunekit/experiments/commands.py).

app.command("compare")(compare_cmd)
app.command("report")(report_cmd)


def _given(e: Exception, argv: list[str] | None) -> str:
    """``, got 'abc'``: the value a bad option was given (the framework's message
    names the option and the type, not what the user typed)."""
    opts = getattr(getattr(e, "param", None), "opts", None) or []
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                return f", got {args[i + 1]!r}"
            if arg.startswith(opt + "="):
                return f", got {arg[len(opt) + 1 :]!r}"
    return ""


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit code 2, no traceback.

    Usage errors (bad flags, a value of the wrong type) are one `error:` line too.
    """
    # typer vendors its own click (typer._click) since 0.22; fall back to click itself.
    try:
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as click_errors

    try:
        # standalone_mode=False: usage errors come back as exceptions, so they print as
        # the project's one `error:` line instead of the framework's boxed message.
        code = app(args=argv, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)  # as standalone mode does
    except click_errors.NoArgsIsHelpError as e:
        out_console.print(e.ctx.get_help() if e.ctx else "", highlight=False, markup=False)
        sys.exit(2)
    except click_errors.UsageError as e:
        name = e.ctx.command.name if e.ctx and e.ctx.command else None
        where = f"{name}: " if name and e.ctx.parent is not None else ""
        message = " ".join(e.format_message().split()) + _given(e, argv)
        err_console.print(
            f"[red]error:[/red] {escape(where + message)}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except click_errors.ClickException as e:
        err_console.print(
            f"[red]error:[/red] {escape(e.format_message())}", highlight=False, soft_wrap=True
        )
        sys.exit(e.exit_code or 1)
    except typer.Abort:
        err_console.print("interrupted")
        sys.exit(130)
    except PrunekitError as e:
        # escape: a message may hold brackets (pip install 'prunekit[ray]') that rich would eat
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)

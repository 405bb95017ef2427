"""Progress bars (rich) that vanish when disabled, so library calls stay quiet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def columns(label: str = "[bold]{task.description}") -> tuple:
    """The columns of every prunekit bar: label, bar, done/total, elapsed, ETA, info."""
    return (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int = 1, loss: float | None = None, **fields: object) -> None:
        if self._p is not None and self._t is not None:
            if loss is not None:
                fields["info"] = f"loss {loss:.4f}"
            self._p.update(self._t, advance=n, **fields)


@contextmanager
def progress_bar(enabled: bool, *, total: int, desc: str) -> Iterator[_Bar]:
    """A rich bar with ETA over ``total`` units; a no-op object when disabled."""
    if not enabled or total <= 0:
        yield _Bar(None, None)
        return
    # stderr: stdout stays clean for tables and JSON a caller may parse.
    with Progress(*columns(), transient=False, console=Console(stderr=True)) as p:
        yield _Bar(p, p.add_task(desc, total=total, info=""))

"""The command line: parse, call the library, print. No logic of its own.

:mod:`.root` holds the typer app, :mod:`.runflags` the run options generated from the
schema, :mod:`.run` ``train`` and ``prune``, :mod:`.saved` ``eval``, ``entropy`` and
``export``, :mod:`.listing` ``list``, :mod:`.results` the result table and
:mod:`.entry` ``main`` (the comparison's commands live in
``prunekit/experiments/commands.py``). Importing this package registers every command,
in the order ``--help`` lists them.
"""

from __future__ import annotations

# Commands register when their module is imported: in the order --help lists them.
from . import run  # noqa: F401  (train, prune)

# isort: split
from . import saved  # noqa: F401  (eval, entropy, export)

# isort: split
from . import listing  # noqa: F401  (list)

# isort: split
from .entry import main  # compare, report

# isort: split
from ..runoptions import parse_options
from .results import result_table
from .root import app
from .runflags import run_options

__all__ = ["app", "main", "parse_options", "result_table", "run_options"]

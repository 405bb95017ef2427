"""The user-facing errors, in a module of their own so that any module can raise them
without importing the registry (or anything else of prunekit).

The CLI prints a ``PrunekitError`` on one line, ``error: <message>``, and exits 2.
"""

from __future__ import annotations


class PrunekitError(ValueError):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


class UnknownNameError(PrunekitError, KeyError):
    """An unknown registry name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])

"""What a user reads about a method, kept beside the code that defines it.

Each module that registers a :class:`~prunekit.pruning.methods.Method` also calls
:func:`describe` with a :class:`MethodDoc`: the formula and what its symbols mean, the
paper, and when to choose the method. The documentation site generates one page per
registered method from this, the method's own fields (granularity, schedule, options
and their defaults, read from the registered objects) and the measured results in
``benchmarks/results/*.md`` -- so nothing on those pages is typed twice. A method
registered without a ``MethodDoc`` still gets a page, built from its ``description``
and the docstrings of its criterion and objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import Registry


@dataclass(frozen=True)
class MethodDoc:
    """``formula``: LaTeX (display math, no ``$$``); ``symbols``: symbol (LaTeX) ->
    meaning; ``paper``: the citation; ``when``: when to choose it, in one paragraph."""

    title: str
    formula: str
    symbols: dict[str, str] = field(default_factory=dict)
    paper: str = ""
    paper_url: str | None = None
    when: str = ""


METHOD_DOCS: Registry[MethodDoc] = Registry("method doc")


def describe(name: str, doc: MethodDoc) -> MethodDoc:
    """Attach the reader-facing description of the registered method ``name``."""
    METHOD_DOCS.add(name, doc)
    return doc

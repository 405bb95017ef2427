"""Pruning: masks, granularities, criteria, objectives, schedules and named methods.

Importing this package registers every criterion, objective and granularity module
(and the methods they define), so ``METHODS`` and ``GRANULARITIES`` are complete
whatever is imported first.
"""

from .granularity import nm  # noqa: F401  (registers the kernel and nm granularities)

from . import (  # noqa: F401,E402
    criteria,
    methods,  # noqa: F401  (defines METHODS before the modules that fill it)
    objectives,
)

"""Pruning: masks, granularities, criteria, objectives, schedules and named methods.

Importing this package registers every criterion, objective and granularity module
(and the methods they define), so ``METHODS`` and ``GRANULARITIES`` are complete
whatever is imported first.
"""

from . import (  # noqa: F401,E402
    criteria,
    granularity,  # registers every granularity
    methods,  # noqa: F401  (defines METHODS before the modules that fill it)
    objectives,
)

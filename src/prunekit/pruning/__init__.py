"""Pruning: masks, granularities, criteria, objectives, schedules and named methods.

Importing this package registers every criterion and objective module (and the
methods they define), so ``METHODS`` is complete whatever is imported first.
"""

from . import (  # noqa: F401,E402
    criteria,
    methods,  # noqa: F401  (defines METHODS before the modules that fill it)
    objectives,
)

"""``prunekit list``: what is registered (models, datasets, methods, ...)."""

from __future__ import annotations

from rich.table import Table

from .root import app, out_console


@app.command("list")
def list_cmd() -> None:
    """Known models, datasets, methods, criteria, granularities and schedules."""
    from ..data import DATASETS
    from ..models import MODELS
    from ..pruning.criteria import CRITERIA
    from ..pruning.granularity import GRANULARITIES
    from ..pruning.methods import METHODS
    from ..pruning.schedules import SCHEDULES

    for title, reg in (
        ("models", MODELS),
        ("datasets", DATASETS),
        ("criteria", CRITERIA),
        ("granularities", GRANULARITIES),
        ("schedules", SCHEDULES),
    ):
        out_console.print(f"[bold]{title}[/bold]: {', '.join(reg.names())}")
    from ..lm.models import LM_MODELS
    from ..lm.prune import LM_METHODS
    from ..lm.structured import STRUCT_METHODS
    from ..lm.text import CORPORA

    out_console.print(
        f"[bold]language models[/bold]: {', '.join(LM_MODELS)}, hf:PATH; "
        f"[bold]text corpora[/bold]: {', '.join(CORPORA)}, text:PATH; "
        f"[bold]LM methods[/bold]: {', '.join(LM_METHODS)}; "
        f"heads + MLP units: {', '.join(STRUCT_METHODS)}"
    )
    t = Table(title="methods")
    for col in ("name", "criterion", "granularity", "objective", "schedule", "description"):
        t.add_column(col)
    for name in METHODS.names():
        m = METHODS.get(name)
        t.add_row(name, m.criterion, m.granularity, m.objective or "-", m.schedule, m.description)
    out_console.print(t)

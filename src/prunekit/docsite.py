"""Pages of the documentation site that are generated, not written: one per registered
method, from the registries and the recorded benchmark results.

``docs/hooks.py`` (an MkDocs hook) calls :func:`method_pages` on every build, so a
method registered later gets its page without anyone writing it; its prose comes from
the :class:`~prunekit.pruning.method_docs.MethodDoc` beside its registration, its
options and defaults from the registered objects, and its measured results from the
tables of ``benchmarks/results/*.md`` (the rows naming the method, with the table's
header, section and the command that produced the file).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .pruning.methods import METHODS, Method


def method_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower())


# -- measured results --------------------------------------------------------------


@dataclass
class ResultTable:
    source: str  # file name under benchmarks/results/
    title: str  # the file's "# " heading
    command: str | None
    section: str  # the nearest "##"/"###" heading above the table
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def _tables(text: str) -> list[tuple[str, str | None, str, list[str], list[list[str]]]]:
    """(title, command, section, header, rows) of every Markdown table in ``text``."""
    title, command, section = "", None, ""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("# "):
            title = line[2:].strip()
        elif re.match(r"#{2,6} ", line):
            section = line.lstrip("#").strip()
        elif command is None and line.startswith("Command:"):
            found = re.search(r"`([^`]+)`", line)
            command = found.group(1) if found else None
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"\|\s*-", lines[i + 1]):
            header, rows, i = _cells(line), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append((title, command, section, header, rows))
            continue
        i += 1
    return out


def measured_results(name: str, results_dir: str | Path) -> list[ResultTable]:
    """Every recorded table row whose ``method`` column (else its first column) is
    ``name``, with the dense rows of the same table for reference."""
    found = []
    for path in sorted(Path(results_dir).glob("*.md")):
        for title, command, section, header, rows in _tables(path.read_text()):
            low = [h.lower() for h in header]
            col = low.index("method") if "method" in low else 0
            mine = [r for r in rows if len(r) > col and r[col].strip("` ") == name]
            if not mine:
                continue
            dense = [
                r
                for r in rows
                if name != "dense" and len(r) > col and r[col].strip("` ").startswith("dense")
            ]
            found.append(ResultTable(path.name, title, command, section, header, dense + mine))
    return found


# -- options -----------------------------------------------------------------------


def option_table(method: Method) -> list[tuple[str, str, str]]:
    """(part, option, default) of everything ``-o KEY=VALUE`` can set for ``method``,
    read from each part's options dataclass, with the method's own overrides applied."""
    from .pruning.methods import part_options

    labels = {
        "objective_args": f"objective {method.objective}",
        "schedule_args": f"schedule {method.schedule}",
        "criterion_args": f"criterion {method.criterion}",
        "granularity_args": f"granularity {method.granularity}",
    }
    rows = []
    for field_name, options in part_options(method).items():
        overrides = getattr(method, field_name)
        for opt, default, _help in options.rows():
            rows.append((labels[field_name], opt, repr(overrides.get(opt, default))))
    return rows


def _needs_calibration(method: Method) -> bool:
    """Whether the method's criterion reads calibration data."""
    from .pruning.criteria import needs_data

    return needs_data(method.criterion)


# -- the page ----------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _docstring(obj: Any) -> str:
    from .pruning.options import Part

    obj = obj.fn if isinstance(obj, Part) else obj
    return inspect.cleandoc(inspect.getmodule(obj).__doc__ or "") if obj is not None else ""


def method_page(name: str, results_dir: str | Path) -> str:
    """The Markdown page of the registered method ``name``."""
    from .pruning.criteria import CRITERIA
    from .pruning.method_docs import METHOD_DOCS
    from .pruning.objectives import OBJECTIVES

    m = METHODS.get(name)
    doc = METHOD_DOCS.get(name) if name in METHOD_DOCS else None
    title = f"`{name}`: {doc.title}" if doc else f"`{name}`"
    out = [f"# {title}\n", f"{m.description}\n"]
    if doc:
        out.append(f"## Formula\n\n$$\n{doc.formula}\n$$\n")
        if doc.symbols:
            out.append(
                "| symbol | meaning |\n|---|---|\n"
                + "\n".join(f"| ${s}$ | {v} |" for s, v in doc.symbols.items())
                + "\n"
            )
        if doc.paper:
            paper = f"[{doc.paper}]({doc.paper_url})" if doc.paper_url else doc.paper
            out.append(f"**Paper:** {paper}\n")
    else:  # no MethodDoc yet: the docstrings of its parts say what it does
        for label, obj in (
            ("criterion", CRITERIA.get(m.criterion)),
            ("objective", OBJECTIVES.get(m.objective) if m.objective else None),
        ):
            text = _docstring(obj)
            if text:
                out.append(f"## Its {label} (from the docstring)\n\n```text\n{text}\n```\n")

    training = (
        f"yes: the `{m.objective}` term shapes the weights "
        + (
            "during the whole sparsify phase"
            if m.objective_phase == "all"
            else f"over the first {m.regularize_fraction:.0%} of the sparsify phase"
        )
        if m.objective
        else "no extra training term; fine-tuning after pruning, in the same budget"
    )
    calib = (
        "yes: its criterion scores on a calibration set (the validation split in a run, "
        "`data=(x, y)` in `prunekit.prune`)"
        if _needs_calibration(m)
        else "no"
    )
    out.append(
        "## What it needs\n\n"
        f"| | this method |\n|---|---|\n| training | {training} |\n"
        f"| calibration data | {calib} |\n"
        f"| granularity | `{m.granularity}` |\n| scope | `{m.scope}` |\n"
        f"| schedule | `{m.schedule}` |\n| criterion | `{m.criterion}` |\n"
    )
    opts = option_table(m)
    if opts:
        out.append(
            "## Options and defaults\n\nSet with `-o KEY=VALUE` on `prunekit prune` "
            "(or `--lambda`, `--cycles`, `--nm`), or in a comparison config.\n\n"
            + _md_table(["part", "option", "default"], [[p, f"`{o}`", d] for p, o, d in opts])
            + "\n"
        )
    if doc and doc.when:
        out.append(f"## When to choose it\n\n{doc.when}\n")
    run_line = (
        "prunekit train --model lenet300 --dataset fashion-mnist --out runs/dense"
        if name == "dense"
        else "prunekit prune --model lenet300 --dataset fashion-mnist "
        f"--method {name} --sparsity 0.9 --out runs/{method_slug(name)}90"
    )
    out.append(f"## Run it\n\n```bash\n{run_line}\nprunekit compare --only {name}\n```\n")
    picture = Path(results_dir) / "pictures" / "methods" / f"{method_slug(name)}.png"
    if picture.is_file():  # recorded by benchmarks/pictures.py; the docs hook publishes it
        out.append(
            "## What it removed\n\nSurviving first-layer connections per input pixel of "
            "LeNet-300-100 on Fashion-MNIST (recorded by `benchmarks/pictures.py`, see "
            "[the pictures guide](../guides/pictures.md)):\n\n"
            f"![{name}: first-layer connections](../guides/img/methods/{picture.name})\n"
        )
    tables = measured_results(name, results_dir)
    out.append("## Measured results\n")
    if not tables:
        out.append("No recorded benchmark names this method yet.\n")
    for t in tables:
        cmd = f" Command: `{t.command}`." if t.command else ""
        out.append(
            f"### {t.title}: {t.section}\n\nFrom `benchmarks/results/{t.source}`.{cmd}\n\n"
            + _md_table(t.header, t.rows)
            + "\n"
        )
    return "\n".join(out)


def method_pages(results_dir: str | Path) -> dict[str, str]:
    """``{"methods/<slug>.md": page}`` for every registered method."""
    return {f"methods/{method_slug(n)}.md": method_page(n, results_dir) for n in METHODS.names()}


def methods_index() -> str:
    from .pruning.method_docs import METHOD_DOCS

    rows = []
    for n in METHODS.names():
        m = METHODS.get(n)
        t = METHOD_DOCS.get(n).title if n in METHOD_DOCS else m.description
        rows.append([f"[`{n}`]({method_slug(n)}.md)", t, m.granularity, m.objective or "-"])
    return (
        "# Methods\n\nEvery registered method, each with a page generated from its "
        "registration and the recorded benchmarks.\n\n"
        + _md_table(["method", "what", "granularity", "training term"], rows)
        + "\n"
    )


def results_section(path: str | Path, section: str) -> str:
    """The first table under the heading ``section`` (exact, or the start of it) of a
    recorded results file, as Markdown with its source and command; raises
    ``LookupError`` when there is none, so a docs build fails instead of showing nothing."""
    path = Path(path)
    for title, command, sec, header, rows in _tables(path.read_text()):
        if sec == section or sec.startswith(section):
            cmd = f" Command: `{command}`." if command else ""
            return (
                f"*{title}: {sec}* (from `benchmarks/results/{path.name}`.{cmd})\n\n"
                + _md_table(header, rows)
                + "\n"
            )
    raise LookupError(f"{path}: no table under a heading starting with {section!r}")

"""The documentation cannot drift from the code: every Python block of docs/ runs, every
`prunekit ...` command line names a real command and real options, every registered
method gets a generated page titled with its name, and measured figures are pulled
from benchmarks/results/ (never retyped)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from prunekit.docsite import measured_results, method_pages, results_section
from prunekit.pruning.method_docs import METHOD_DOCS
from prunekit.pruning.methods import METHODS, Method

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
PAGES = sorted(DOCS.rglob("*.md"))


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


PY_PAGES = [p for p in PAGES if _blocks(p.read_text(), "python")]


@pytest.fixture
def isolated_registries(monkeypatch):
    """Docs may register a method (the own-method example): keep it out of other tests."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(METHOD_DOCS, "_items", dict(METHOD_DOCS._items))


def test_docs_have_python_blocks():
    assert len(PY_PAGES) >= 8, [p.name for p in PY_PAGES]


@pytest.mark.parametrize("page", PY_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_run(page, tmp_path, monkeypatch, isolated_registries):
    """The blocks of a page run in order, in one namespace, in a scratch directory."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(_blocks(page.read_text(), "python")):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)


def _command_lines(text: str) -> list[list[str]]:
    lines = []
    for block in _blocks(text, "bash"):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            words = shlex.split(line) if line else []
            if "prunekit" in words:  # also `.venv/bin/prunekit`, `-m prunekit`
                lines.append(words[words.index("prunekit") + 1 :])
            elif words and words[0].endswith("/prunekit"):
                lines.append(words[1:])
    return lines


def test_cli_lines_name_real_commands_and_options():
    import typer.main

    from prunekit.cli import app

    cli = typer.main.get_command(app)
    checked = 0
    texts = {p.name: p.read_text() for p in PAGES + [ROOT / "README.md"]}
    texts.update(method_pages(RESULTS))  # the generated pages' "Run it" lines too
    for page, text in texts.items():
        for words in _command_lines(text):
            if not words:
                continue
            assert words[0] in cli.commands, f"{page}: unknown command {words[0]!r}"
            cmd = cli.commands[words[0]]
            known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
            for w in words[1:]:
                flag = w.split("=", 1)[0]
                if flag.startswith("-") and not re.fullmatch(r"-?[0-9.]+", flag):
                    assert flag in known, f"{page}: `prunekit {words[0]}` has no {flag}"
            checked += 1
    assert checked >= 15


def test_every_registered_method_has_a_page_titled_with_its_name():
    pages = method_pages(RESULTS)
    assert len(pages) == len(METHODS)
    for name in METHODS.names():
        text = pages[f"methods/{name}.md"]
        title = text.splitlines()[0]
        assert title.startswith("# ") and name in title, title
        assert "## What it needs" in text and "## Measured results" in text


def test_a_method_registered_later_gets_a_page(monkeypatch):
    """No MethodDoc: the page is built from the registration and its parts' docstrings."""
    monkeypatch.setitem(
        METHODS._items,
        "toy-entropy",
        Method("toy-entropy", criterion="entropy", granularity="neuron", description="A toy."),
    )
    text = method_pages(RESULTS)["methods/toy-entropy.md"]
    assert text.startswith("# `toy-entropy`")
    assert "A toy." in text
    assert "Luo & Wu 2017" in text  # the entropy criterion's module docstring
    assert "| calibration data | yes" in text  # its criterion reads ctx.data
    assert "No recorded benchmark names this method yet." in text


def test_documented_pages_carry_formula_paper_options():
    text = method_pages(RESULTS)["methods/l0.md"]
    assert "## Formula" in text and "$$" in text
    assert "https://arxiv.org/abs/1712.01312" in text
    assert "| objective l0 | `gate_lr` | 0.05 |" in text  # from the factory's signature
    assert "| training | yes: the `l0` term" in text
    assert "| calibration data | no |" in text


def test_measured_results_are_the_recorded_rows(tmp_path):
    (tmp_path / "bench.md").write_text(
        "# Bench\n\nCommand: `python benchmarks/x.py`\n\n## Accuracy\n\n"
        "| model | method | acc |\n|---|---|---|\n"
        "| m | dense | 0.9 |\n| m | foo | 0.8 |\n| m | foo-bar | 0.7 |\n| m | baz | 0.6 |\n"
    )
    (t,) = measured_results("foo", tmp_path)
    assert (t.title, t.command, t.section) == ("Bench", "python benchmarks/x.py", "Accuracy")
    assert t.header == ["model", "method", "acc"]
    assert t.rows == [["m", "dense", "0.9"], ["m", "foo", "0.8"]]  # dense for reference
    assert measured_results("nothing", tmp_path) == []
    assert "| m | baz | 0.6 |" in results_section(tmp_path / "bench.md", "Acc")
    with pytest.raises(LookupError, match="Speed"):
        results_section(tmp_path / "bench.md", "Speed")


def test_readme_links_stay_in_the_repository():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), target
        assert path.exists(), target


def test_yaml_blocks_are_valid_comparison_configs():
    import yaml

    from prunekit.experiments.plan import config_from_dict, plan

    blocks = [b for p in PAGES for b in _blocks(p.read_text(), "yaml")]
    assert blocks
    for block in blocks:
        assert plan(config_from_dict(yaml.safe_load(block)))  # names, keys and values checked

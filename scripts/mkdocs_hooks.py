"""MkDocs hooks: the pages and pictures that are generated on every build.

- ``methods/<name>.md`` for every registered method and ``methods/index.md``
  (``prunekit.docsite``: registries + ``benchmarks/results/*.md``), listed in the nav
  under "Methods";
- ``concepts/img/granularity_<name>.png``: each granularity's mask on a small layer,
  drawn by ``prunekit.visualize.granularity_figure`` from the real granularity code;
- ``guides/img/*.png``: the pictures ``benchmarks/pictures.py`` recorded in
  ``benchmarks/results/pictures/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    from prunekit.docsite import method_slug
    from prunekit.pruning.methods import METHODS

    pages = [{"Overview": "methods/index.md"}]
    pages += [{n: f"methods/{method_slug(n)}.md"} for n in METHODS.names()]
    for i, item in enumerate(config.nav):
        if isinstance(item, dict) and "Methods" in item:
            config.nav[i] = {"Methods": pages}
    return config


def on_files(files, config):
    from prunekit.docsite import method_pages, methods_index
    from prunekit.visualize import GRANULARITY_PICTURES, figure_png, granularity_figure

    generated = dict(method_pages(_root(config) / "benchmarks" / "results"))
    generated["methods/index.md"] = methods_index()
    for uri, text in generated.items():
        files.append(File.generated(config, uri, content=text))
    # The pictures benchmarks/pictures.py recorded (docs/guides/pictures.md shows them).
    pictures = _root(config) / "benchmarks" / "results" / "pictures"
    for png_path in sorted(pictures.rglob("*.png")):
        uri = f"guides/img/{png_path.relative_to(pictures).as_posix()}"
        files.append(File.generated(config, uri, content=png_path.read_bytes()))
    for name in GRANULARITY_PICTURES:
        png = figure_png(granularity_figure(name))
        files.append(File.generated(config, f"concepts/img/granularity_{name}.png", content=png))
    return files


# A line `<!-- results FILE | SECTION -->` in a page becomes the first table under the
# heading SECTION of benchmarks/results/FILE, with its source and command: measured
# figures are included, never retyped. A marker that finds no table fails the build.
_RESULTS = re.compile(r"^<!-- results (\S+) \| (.+?) -->$", __import__("re").M)


def on_page_markdown(markdown, page, config, files):
    from prunekit.docsite import results_section

    results = _root(config) / "benchmarks" / "results"
    return _RESULTS.sub(lambda m: results_section(results / m.group(1), m.group(2)), markdown)

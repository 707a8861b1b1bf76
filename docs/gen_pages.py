"""Run by mkdocs-gen-files at every build (mkdocs.yml): writes the reference pages generated from
the code and fills the benchmarks pages' ``<!-- results: NAME -->`` markers with tables and plots
from benchmarks/results/*.json. Nothing is written into docs/: the files live in the build."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gen import benchmarks, messages, reference  # noqa: E402

PAGES = {
    "reference/cli.md": reference.cli_page,
    "reference/settings.md": reference.settings_page,
    "reference/metrics.md": reference.metrics_page,
    "reference/alerts.md": reference.alerts_page,
    "reference/messages.md": messages.messages_page,
}
for path, build in PAGES.items():
    with mkdocs_gen_files.open(path, "w") as page:
        page.write(build())

figures = benchmarks.Figures()
marker = re.compile(r"<!-- results: (\w+) -->")
docs = Path(__file__).resolve().parent
for source in sorted((docs / "benchmarks").glob("*.md")):
    text = source.read_text()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "index":
            return benchmarks.index()
        return benchmarks.SECTIONS[name](figures)

    filled = marker.sub(fill, text)
    if filled != text:
        with mkdocs_gen_files.open(f"benchmarks/{source.name}", "w") as page:
            page.write(filled)
for path, data in figures.images.items():
    with mkdocs_gen_files.open(path, "wb") as image:
        image.write(data)

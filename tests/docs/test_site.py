"""The documentation site, built strictly from docs/ (a broken link or a missing page fails the
build) and opened page by page in a real headless Chromium: each page renders its content with
no console error, and every image on it loads (the benchmark plots are generated at build)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.docs.chromium import Chromium

BROKEN_IMAGES = """JSON.stringify(Array.from(document.images)
    .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src))"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(built)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return built


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP, as a user's browser gets it (search runs in a web worker, which
    a file:// page may not start)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_site_has_every_section_and_the_generated_pages(site: Path) -> None:
    for page in (
        "tutorials/demo",
        "tutorials/own-data",
        "tutorials/several-machines",
        "how-to/secure-broker",
        "reference/cli",
        "reference/settings",
        "reference/messages",
        "reference/metrics",
        "reference/alerts",
        "explanation/architecture",
        "benchmarks/predictor",
    ):
        assert (site / page / "index.html").is_file(), page
    assert list((site / "benchmarks").glob("*.png")), "no benchmark plot was generated"


def test_every_page_renders_without_console_errors_and_every_image_loads(
    site: Path, served: str, tmp_path: Path
) -> None:
    pages = sorted(p.relative_to(site).parent for p in site.rglob("index.html"))
    assert len(pages) >= 30
    problems: dict[str, list[str]] = {}
    images = 0
    with Chromium(tmp_path / "profile") as browser:
        for page in pages:
            url = f"{served}/{page.as_posix()}/".replace("/./", "/")
            errors = browser.open(url)
            if not browser.evaluate("!!document.querySelector('article h1')"):
                errors.append("no article heading rendered")
            broken = browser.evaluate(BROKEN_IMAGES)
            errors += [f"image did not load: {src}" for src in json.loads(broken)]
            images += browser.evaluate("document.images.length")
            if errors:
                problems[str(page)] = errors
    assert not problems, problems
    assert images > 10  # the benchmark pages' plots were among them

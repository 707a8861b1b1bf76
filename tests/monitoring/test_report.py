"""The HTML drift report, rendered by a real headless Chromium (installed by scripts/chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamfit.datasets.adult import CONTRACT
from streamfit.monitoring import DriftDetector, OutputDrift
from streamfit.monitoring.sequential import SequentialScan


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("no chromium binary: run scripts/chromium up (scripts/test does)")
    return binary


def _render(page: Path, tmp_path: Path) -> str:
    """The DOM after Chromium loaded and laid out the page, network off."""
    result = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--proxy-server=127.0.0.1:9",  # any network request would fail, none is made
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_chromium_renders_every_section(
    reference: pd.DataFrame, adult_test: pd.DataFrame, tmp_path: Path
) -> None:
    detector = DriftDetector.for_contract(
        CONTRACT, reference_size=2000, classifier_null_runs=0
    ).fit(reference)
    window = adult_test.sample(800, random_state=9).reset_index(drop=True)
    window["hours_per_week"] = window["hours_per_week"] * 1.3
    report = detector.score(window, window_end=800)
    scan = SequentialScan(detector.reference_counts, ert=100)
    report.add_sequential(scan.update(detector.feature_counts(window)), scan)
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, 3000)
    output = OutputDrift().fit(p, (rng.random(3000) < p).astype(int))
    current = rng.beta(2, 3, 800)
    report.add_output(
        output.test_output(current, 0.001),
        output.test_labels(current, (rng.random(800) < current).astype(int), 0.001),
    )
    page = tmp_path / "report.html"
    page.write_text(report.to_html(), encoding="utf-8")

    dom = _render(page, tmp_path)
    sections = re.findall(r'<section class="feature[^"]*" id="feature-([^"]+)"', dom)
    assert sorted(sections) == sorted(detector.kinds)  # every feature, once
    assert sections[0] == "hours_per_week"  # the most shifted first
    assert dom.index('id="verdict"') < dom.index("<section")  # the verdict comes first
    assert re.search(r'id="verdict" class="verdict drift">DRIFT<', dom)
    assert 'id="output"' in dom and 'id="labels"' in dom
    # Each section carries its chart and its reason in words.
    assert dom.count("<svg") == len(detector.kinds) + 2
    hours = dom[dom.index('id="feature-hours_per_week"') :]
    assert "shifted: p = " in hours[: hours.index("</section>")]

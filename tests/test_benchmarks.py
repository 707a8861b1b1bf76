"""The benchmark scripts import: a module moved in ``src/streamfit`` breaks a benchmark only
when someone next runs it, long after the move (it happened twice)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_benchmark_script_imports() -> None:
    modules = sorted(path.stem for path in BENCHMARKS.glob("*.py"))
    assert "predictor" in modules and "training_data" in modules
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(f"import {name}" for name in modules)],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

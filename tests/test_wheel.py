"""The wheel installs like a real package: built from the sdist (the native decoder compiled in),
installed with the locked dependencies into a fresh virtualenv outside the repository, it trains
and serves with no file of the source tree, on the oldest and the newest Python supported."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, skip_or_fail_in_ci

PYTHONS = ("3.11", "3.13")


def _interpreter(version: str) -> str | None:
    """A working ``python<version>``: on PATH, else one that pyenv keeps (its shims answer only
    for the selected versions)."""
    candidates = [shutil.which(f"python{version}") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}*/bin/python{version}"))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-V"], capture_output=True).returncode == 0:
            return candidate
    return None


def _uv() -> str:
    uv = REPO / ".uv" / "bin" / "uv"  # the pinned uv that `make install` puts there
    return str(uv) if uv.exists() else shutil.which("uv") or pytest.fail("no uv: run make install")


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("version", PYTHONS)
def test_the_wheel_installs_and_runs_outside_the_repository(version: str, tmp_path: Path) -> None:
    python = _interpreter(version)
    if python is None:
        skip_or_fail_in_ci(f"python{version} is not installed")
    uv, dist = _uv(), tmp_path / "dist"
    # uv builds the sdist, then the wheel from the sdist: a file missing from the sdist fails here.
    _run(uv, "build", "--python", python, "--out-dir", dist, cwd=REPO)
    (sdist,) = dist.glob("streamfit-*.tar.gz")
    (wheel,) = dist.glob("streamfit-*.whl")
    assert f"cp{version.replace('.', '')}" in wheel.name  # it carries the compiled decoder

    locked = tmp_path / "requirements.txt"
    _run(uv, "export", "--frozen", "--no-dev", "--no-emit-project", "-o", locked, cwd=REPO)
    venv = tmp_path / "venv"
    _run(uv, "venv", "--python", python, venv, cwd=tmp_path)
    _run(uv, "pip", "install", "--python", venv, "--require-hashes", "-r", locked, cwd=tmp_path)
    _run(uv, "pip", "install", "--python", venv, "--no-deps", wheel, cwd=tmp_path)

    # Nothing of the repository on the way: a clean environment, run from elsewhere.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    imported = _run(
        venv / "bin" / "python",
        "-c",
        "import streamfit._native as n; print(n.__file__)",
        cwd=work,
        env=env,
    )
    assert Path(imported.strip()).is_relative_to(venv) and REPO.as_posix() not in imported

    def streamfit(*arguments: str | Path) -> str:
        return _run(venv / "bin" / "streamfit", *arguments, cwd=work, env=env)

    from streamfit import __version__

    assert streamfit("--version").split() == ["streamfit", __version__]
    data = ("--data-dir", work / "data")
    streamfit("init", *data, "--max-evals", "2")
    summary = work / "summary.json"
    streamfit("demo", *data, "--max-evals", "2", "--count", "30", "--summary-json", summary)
    answered = json.loads(summary.read_text())
    assert answered["sent"] == answered["answered"] == 30 and answered["lost"] == 0
    assert sdist.stat().st_size > 0

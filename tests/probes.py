"""Helpers of the tests that talk to a service's /metrics, /healthz and /readyz over HTTP."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request

from streamfit.ops.health import Health
from tests.conftest import REPO


def get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def status(url: str) -> int | None:
    """The HTTP status, or None when nothing listens."""
    try:
        return get(url)[0]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class ProbedService:
    """What the probe server reads of a service: its metrics and its health."""

    def __init__(self, metrics: object) -> None:
        self.metrics = metrics
        self.health = Health(metrics)


def promtool_check(exposition: bytes) -> None:
    """``promtool check metrics`` (Debian's prometheus package, installed when missing)."""
    if shutil.which("promtool") is None:
        subprocess.run([REPO / "scripts" / "prometheus", "install"], check=True)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()

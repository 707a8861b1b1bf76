"""What the deployment files (deploy/: alert rules, dashboard) are checked against: the metric
names the services export, and promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streamfit.ops import metrics
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "streamfit.json"

# The sample names a metric family of each type exposes, as PromQL sees them.
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def exported_names() -> set[str]:
    """Every sample name any service exports: each metrics class of ``streamfit.ops.metrics`` is
    built on a registry of its own and its families read back (labelled families included,
    whether or not a child exists yet)."""
    names: set[str] = set()
    for service in metrics.ServiceMetrics.__subclasses__():
        registry = CollectorRegistry()
        service(registry)
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def names_in(expression: str) -> set[str]:
    """The ``streamfit_*`` metric names a PromQL expression reads (string literals, such as
    label values, left out)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    return set(re.findall(r"\bstreamfit_[a-zA-Z0-9_:]*", unquoted))


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from Debian's ``prometheus`` package, installed by ``scripts/prometheus
    install`` when missing (as scripts/test does): fails, never skips, without it."""
    if shutil.which("promtool") is None:
        install = subprocess.run(
            [REPO / "scripts" / "prometheus", "install"], capture_output=True, text=True
        )
        if install.returncode != 0 or shutil.which("promtool") is None:
            reason = install.stderr.strip() or install.stdout.strip()
            pytest.fail(f"scripts/prometheus install failed: {reason}", pytrace=False)
    return str(shutil.which("promtool"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

"""The alert rules on a real Prometheus (Debian's package, through scripts/prometheus on a port
and state directory of this test's own), scraping the real /metrics of services in trouble: every
rule loads and evaluates without error, and the ones whose condition holds go pending or fire."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from streamfit.ops.health import ProbeServer
from streamfit.ops.metrics import MonitorMetrics, PredictorMetrics, TrainerMetrics
from tests.conftest import REPO
from tests.deploy.conftest import ALERTS, alert_rules
from tests.harness import free_port
from tests.probes import ProbedService


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


@pytest.fixture
def troubled_services() -> Iterator[str]:
    """A monitor that sees drift and low accuracy, a trainer whose gate refused 3 rounds in a
    row, a predictor: on one endpoint, as the demo serves them."""
    monitor, trainer, predictor = MonitorMetrics(), TrainerMetrics(), PredictorMetrics()
    monitor.drifted.set(1)
    monitor.drift_score.set(0.9)
    monitor.accuracy.labels("realised").set(0.62)
    monitor.accuracy.labels("estimated").set(0.86)
    trainer.refused_in_a_row.set(3)
    predictor.model_version.set(2)
    predictor.model_loaded.set(time.time())
    services = {
        "monitor": ProbedService(monitor),
        "trainer": ProbedService(trainer),
        "predictor": ProbedService(predictor),
    }
    with ProbeServer(services, port=0, host="127.0.0.1") as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture
def prometheus(tmp_path: Path, troubled_services: str) -> Iterator[str]:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "streamfit", "static_configs": [{"targets": [troubled_services]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    environment = {
        **os.environ,
        "STREAMFIT_PROMETHEUS_PORT": str(port),
        "STREAMFIT_PROMETHEUS_HOME": str(tmp_path / "state"),
        "STREAMFIT_PROMETHEUS_CONFIG": str(tmp_path / "prometheus.yml"),
    }
    script = REPO / "scripts" / "prometheus"
    up = subprocess.run([script, "up"], env=environment, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([script, "down"], env=environment, capture_output=True, timeout=60)


def test_the_rules_evaluate_on_real_metrics_and_trouble_raises_alerts(prometheus: str) -> None:
    expected = {
        "StreamfitDriftAlarm": "pending",  # for: 10m
        "StreamfitAccuracyBelowFloor": "pending",  # realised 0.62; for: 15m
        "StreamfitGateRefusing": "firing",  # no wait
    }
    deadline, alerts = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        found = _get(prometheus + "/api/v1/alerts")["data"]["alerts"]
        alerts = {a["labels"]["alertname"]: a for a in found}
        if {name: a["state"] for name, a in alerts.items()} == expected:
            break
        time.sleep(1)
    assert {name: a["state"] for name, a in alerts.items()} == expected
    assert alerts["StreamfitAccuracyBelowFloor"]["labels"]["source"] == "realised"
    assert alerts["StreamfitGateRefusing"]["annotations"]["summary"] == (
        "The gate refused 3 rounds in a row"
    )
    groups = _get(prometheus + "/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {rule["alert"] for rule in alert_rules()}
    assert {name: r["health"] for name, r in rules.items() if r["health"] != "ok"} == {}

"""Operating the services: /metrics, /healthz and /readyz of each `streamfit` process over HTTP,
a real Prometheus scraping them, and a predictor's graceful stop on SIGTERM, on the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.harness import free_port, wait_until
from tests.probes import get, promtool_check, status

pytestmark = pytest.mark.kafka

SERVICES = ("predictor", "recorder", "trainer", "monitor")


def samples(port: int, name: str) -> list:
    """Every sample called ``name`` in a service's /metrics."""
    code, body = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    return [
        found
        for family in text_string_to_metric_families(body.decode())
        for found in family.samples
        if found.name == name
    ]


def sample(port: int, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample of a service's /metrics (None if absent)."""
    found = [s.value for s in samples(port, name) if s.labels == (labels or {})]
    return found[0] if found else None


def start_service(deployment, command: str, port: int, *args: str, name: str | None = None):
    extra = {"trainer": ("--max-evals", "1"), "monitor": ("--no-tracking",)}.get(command, ())
    probes = ("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    return deployment.start(command, *probes, *extra, *args, name=name)


class Prometheus:
    """A real Prometheus (scripts/prometheus, Debian's package) on a port and state of its own,
    scraping ``targets`` every second."""

    def __init__(self, root, targets: list[str]) -> None:
        self.port = free_port()
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: streamfit\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.env = {
            **os.environ,
            "STREAMFIT_PROMETHEUS_PORT": str(self.port),
            "STREAMFIT_PROMETHEUS_HOME": str(root / "prometheus"),
            "STREAMFIT_PROMETHEUS_CONFIG": str(config),
        }

    def __enter__(self) -> Prometheus:
        up = subprocess.run(
            [REPO / "scripts" / "prometheus", "up"], env=self.env, capture_output=True, text=True
        )
        assert up.returncode == 0, up.stdout + up.stderr
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run([REPO / "scripts" / "prometheus", "down"], env=self.env, check=True)

    def query(self, expression: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expression}
        )
        code, body = get(url)
        assert code == 200, body
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return reply["data"]["result"]


def test_every_service_answers_its_probes_and_prometheus_scrapes_them(deployment, tmp_path):
    ports = {name: free_port() for name in SERVICES}
    processes = {name: start_service(deployment, name, ports[name]) for name in SERVICES}
    for name in SERVICES:  # /healthz answers while the service starts; /readyz once it can work
        wait_until(
            lambda name=name: status(f"http://127.0.0.1:{ports[name]}/readyz") == 200,
            300,
            f"{name} ready",
            log=lambda name=name: deployment.log(processes[name]),
            process=processes[name],
        )
    for name, port in ports.items():
        base = f"http://127.0.0.1:{port}"
        assert get(base + "/healthz") == (200, json.dumps({name: "ready"}).encode() + b"\n")
        assert get(base + "/readyz")[0] == 200
        code, body = get(base + "/metrics")
        assert code == 200
        assert f"streamfit_{name}_ready 1.0".encode() in body
        promtool_check(body)
    predictor = ports["predictor"]
    assert sample(predictor, "streamfit_predictor_model_version") == 1
    with Prometheus(tmp_path, [f"127.0.0.1:{port}" for port in ports.values()]) as prometheus:
        summary = deployment.run_app("--count", "150", "--rate", "150")
        assert summary["answered"] == 150 and summary["lost"] == 0
        assert sample(predictor, "streamfit_predictions_total") == summary["answered"]
        latency = sample(predictor, "streamfit_prediction_latency_seconds_count")
        assert latency == summary["answered"]  # every request carried its Kafka timestamp

        # one lag series per partition of requests, all caught up once everything is answered
        def lags() -> dict[str, float]:
            found = samples(predictor, "streamfit_predictor_consumer_lag")
            return {s.labels["partition"]: s.value for s in found}

        wait_until(lambda: lags() == {"0": 0, "1": 0, "2": 0}, 30, "the lag of 3 partitions")
        wait_until(
            lambda: (
                sample(
                    ports["recorder"], "streamfit_recorder_messages_total", {"kind": "prediction"}
                )
                == 150
            ),
            60,
            "the recorder's count",
        )

        def scraped() -> float | None:
            result = prometheus.query("streamfit_predictions_total")
            return float(result[0]["value"][1]) if result else None

        wait_until(lambda: scraped() == summary["answered"], 60, "Prometheus to scrape 150")
        # Every target scraped and up (a first scrape of each may come a little later).
        wait_until(
            lambda: sorted(float(r["value"][1]) for r in prometheus.query("up")) == [1.0] * 4,
            60,
            "Prometheus to scrape the four services up",
        )
        ready = prometheus.query('{__name__=~"streamfit_.*_ready"}')
        assert {r["metric"]["__name__"] for r in ready} == {
            f"streamfit_{name}_ready" for name in SERVICES
        }


def test_sigterm_stops_a_predictor_within_5_s_readyz_first_and_loses_nothing(deployment):
    port = free_port()
    first = start_service(deployment, "predictor", port, name="predictor-1")
    readyz = f"http://127.0.0.1:{port}/readyz"
    wait_until(
        lambda: status(readyz) == 200,
        300,
        "the predictor ready",
        log=lambda: deployment.log(first),
        process=first,
    )
    summary_path = deployment.root / "app.json"
    app = deployment.start(
        "app", "--count", "1500", "--rate", "250", "--summary-json", str(summary_path), name="app"
    )
    wait_until(
        lambda: (sample(port, "streamfit_predictions_total") or 0) >= 300, 120, "predictions"
    )
    seen: list[int | None] = []
    stop = threading.Event()

    def watch() -> None:  # /readyz as an orchestrator's probe sees it, every 10 ms
        while not stop.is_set():
            seen.append(status(readyz))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    signalled = time.monotonic()
    first.send_signal(signal.SIGTERM)
    try:
        first.wait(timeout=30)
    finally:
        exit_s = time.monotonic() - signalled
        stop.set()
        watcher.join()
    assert first.returncode == 0, deployment.log(first)[-3000:]
    print(f"predictor stopped {exit_s:.2f} s after SIGTERM")  # shown with -s
    assert exit_s < 5.0, f"the predictor took {exit_s:.1f} s to stop"
    # Once not ready, never ready again: 503 (stopping), then nothing listening (None). The 503
    # window lasts as long as the stop (0.1 s here): on a loaded machine this 10 ms probe may
    # miss it, so its order is asserted in-process (tests/test_health.py), not here.
    first_down = next(i for i, code in enumerate(seen) if code != 200)
    assert set(seen[first_down:]) <= {503, None}, seen[-20:]
    assert seen[-1] is None
    print(f"probes after SIGTERM: {seen.count(503)} x 503, then nothing listening")
    # Another predictor takes the rest: every request answered once (the stopped one committed
    # everything it answered, or the new one would answer some again).
    second = deployment.start("predictor", "--metrics-port", "0", name="predictor-2")
    app.wait(timeout=300)
    summary = json.loads(summary_path.read_text())
    assert summary["sent"] == summary["answered"] == 1500, summary
    assert summary["lost"] == 0 and summary["duplicates"] == 0, summary
    assert second.poll() is None

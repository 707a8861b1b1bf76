"""`streamfit status`: its core on the real /metrics of running services (a probe server over the
services' own metrics; a whole `streamfit demo`), its table, and `--once --json`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from streamfit.bus import Message
from streamfit.cli import main
from streamfit.config import Settings
from streamfit.models.registry import ModelRegistry
from streamfit.ops.console import render_status
from streamfit.ops.health import ProbeServer
from streamfit.ops.metrics import MonitorMetrics, PredictorMetrics, RecorderMetrics, TrainerMetrics
from streamfit.ops.status import parse_targets, scrape, snapshot, summarise
from tests.conftest import REPO
from tests.harness import free_port
from tests.probes import ProbedService


def test_the_core_reads_a_running_endpoint_between_two_scrapes() -> None:
    predictor, recorder = PredictorMetrics(), RecorderMetrics()
    trainer, monitor = TrainerMetrics(), MonitorMetrics()
    services = {
        "predictor": ProbedService(predictor),
        "recorder": ProbedService(recorder),
        "trainer": ProbedService(trainer),
        "monitor": ProbedService(monitor),
    }
    now = time.time()
    predictor.ready.set(1)
    predictor.model_version.set(3)
    predictor.model_compiled.set(1)
    predictor.model_loaded.set(now - 600)
    predictor.observe_batch([Message("requests", b"{}", timestamp=now - 2.0)] * 10, 10)
    predictor.set_lag({("requests", 0): 5, ("requests", 1): 2})
    trainer.ready.set(1)
    trainer.rounds.labels("retrain", "promoted").inc()
    trainer.rounds.labels("retrain", "refused").inc()
    trainer.refused_in_a_row.set(1)
    trainer.last_promotion.set(now - 300)
    trainer.last_round.set(now - 60)
    trainer.champion_version.set(3)
    trainer.last_holdout_loss.set(0.2841)
    monitor.checks.inc()
    monitor.drift_score.set(0.71)
    monitor.drifted.set(1)
    for feature, score in (("age", 0.9), ("education", 0.1), ("hours_per_week", 0.5)):
        monitor.feature_drift_score.labels(feature).set(score)
    monitor.accuracy.labels("realised").set(0.85)
    monitor.accuracy.labels("estimated").set(0.83)
    with ProbeServer(services, port=0, host="127.0.0.1") as server:
        target = f"127.0.0.1:{server.port}"
        first = scrape(target)
        # between the scrapes: 40 predictions in 10 ms each (the first 10 took 2 s)
        predictor.observe_batch([Message("requests", b"{}", timestamp=time.time() - 0.01)] * 40, 40)
        time.sleep(0.5)
        second = scrape(target)
    state = summarise(second, first)
    assert state["up"] and set(state["services"]) == {"predictor", "recorder", "trainer", "monitor"}
    serving = state["services"]["predictor"]
    assert serving["model_version"] == 3 and serving["compiled"] and serving["ready"]
    assert serving["predictions"] == 50 and serving["lag"] == 7
    assert 40 / (second.at - first.at) == pytest.approx(serving["rate_per_s"])
    # p99 of what happened between the scrapes (10 ms), not since the start (2 s)
    assert serving["latency_window"] == "recent" and serving["latency_p99_s"] <= 0.025
    assert summarise(second)["services"]["predictor"]["latency_p99_s"] > 1.0
    assert 590 < serving["model_age_s"] < 700
    training = state["services"]["trainer"]
    assert training["last_decision"] == "refused" and training["refused_in_a_row"] == 1
    assert training["rounds"] == {"promoted": 1, "refused": 1, "failed": 0}
    assert training["champion_version"] == 3 and training["last_holdout_loss"] == 0.2841
    watching = state["services"]["monitor"]
    assert watching["drifted"] and watching["drift_score"] == 0.71
    assert list(watching["drifting_features"]) == ["age", "hours_per_week", "education"]
    assert (watching["realised_accuracy"], watching["estimated_accuracy"]) == (0.85, 0.83)
    assert not state["services"]["recorder"]["ready"]

    screen = Console(record=True, width=250)
    screen.print(render_status({"time": time.time(), "targets": [state]}))
    text = screen.export_text()
    assert "v3 (compiled)" in text and "DRIFTED" in text and "last round: refused" in text
    assert "realised 0.850 / estimated 0.830" in text


def test_a_target_that_does_not_answer_is_down_not_a_crash() -> None:
    port = free_port()
    state, _ = snapshot([f"127.0.0.1:{port}"], timeout=1)
    (target,) = state["targets"]
    assert not target["up"] and "refused" in target["error"].lower()
    screen = Console(record=True, width=200)
    screen.print(render_status(state))
    assert "down" in screen.export_text()
    assert main(["status", "--once", "--json", "--interval", "0.1", "--targets", str(port)]) == 1


def test_targets_are_checked() -> None:
    assert parse_targets("9471,host-b:9473") == ["127.0.0.1:9471", "host-b:9473"]
    for bad in ("", "host", "host:port", "host:70000"):
        with pytest.raises(ValueError):
            parse_targets(bad)
    assert main(["status", "--once", "--targets", "nowhere"]) == 2


def test_status_once_json_reports_the_version_a_running_demo_serves(tmp_path: Path) -> None:
    """A real `streamfit demo` (in-process bus, its own data dir and metrics port) and
    `streamfit status --once --json` against it, both as a user runs them."""
    port = free_port()
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("STREAMFIT_", "MLFLOW_"))
    }
    environment["PYTHONPATH"] = str(REPO / "src")
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen(
        [sys.executable, "-m", "streamfit.cli", "demo", "--data-dir", str(tmp_path / "data")]
        + ["--init-max-evals", "1", "--max-evals", "1", "--count", "5000", "--rate", "20"]
        + ["--retrain-every", "100000", "--metrics-port", str(port), "--no-compile-model"]
        + ["--log-format", "json"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=log,
        # Ctrl-C as on a terminal: a shell's background job (CI run with `&`) starts with SIGINT
        # ignored, and Python keeps an ignored SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        target, deadline = f"127.0.0.1:{port}", time.monotonic() + 600
        while demo.poll() is None and time.monotonic() < deadline:  # until it serves a model
            predictor = summarise(scrape(target))["services"].get("predictor", {})
            if predictor.get("model_version") and predictor.get("predictions"):
                break
            time.sleep(1)
        # the command, as a user runs it (a loaded machine may take a while to start Python)
        status = subprocess.run(
            [sys.executable, "-m", "streamfit.cli", "status", "--once", "--json"]
            + ["--interval", "0.5", "--targets", target],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        (serving,) = json.loads(status.stdout)["targets"]
        assert serving["up"], (tmp_path / "demo.log").read_text()[-3000:]
        assert status.returncode == 0
        assert set(serving["services"]) == {"predictor", "recorder", "trainer", "monitor"}
        assert serving["services"]["predictor"]["rate_per_s"] is not None
        demo.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops its services and exits
        assert demo.wait(timeout=120) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
    # every service of the demo logged JSON records, and only streamfit's own
    records = [json.loads(line) for line in (tmp_path / "demo.log").read_text().splitlines()]
    assert {r["logger"].split(".")[0] for r in records} == {"streamfit"}
    assert any(r["logger"] == "streamfit.predictor" for r in records)
    # no retrain (one every 100,000 labels): the champion of its registry is what it served
    champion = ModelRegistry.from_settings(Settings(data_dir=tmp_path / "data")).champion()
    assert serving["services"]["predictor"]["model_version"] == champion.version == 1

"""`streamfit demo` end to end, in-process, through the real command line and the real MLflow."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from streamfit.cli import COMMANDS, main
from streamfit.config import Settings
from streamfit.datasets.adult import FEATURE_COLUMNS, load_adult
from streamfit.demo import mlflow_ui_hint, render_summary
from streamfit.models.bundle import ModelStore
from tests.harness import free_port
from tests.probes import get, promtool_check, status


class Scrapes(threading.Thread):
    """The demo's /readyz, /healthz and /metrics, scraped every 0.2 s while it runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.port = free_port()
        self.readyz: list[int | None] = []
        self.healthz: list[int | None] = []
        self.metrics: list[bytes] = []
        self.done = threading.Event()

    def run(self) -> None:
        base = f"http://127.0.0.1:{self.port}"
        while not self.done.wait(0.2):
            self.readyz.append(status(base + "/readyz"))
            self.healthz.append(status(base + "/healthz"))
            with contextlib.suppress(OSError, AssertionError):
                code, body = get(base + "/metrics")
                if code == 200:
                    self.metrics.append(body)


@pytest.fixture(scope="module")
def demo_scrapes() -> Scrapes:
    scrapes = Scrapes()
    scrapes.start()
    return scrapes


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_scrapes: Scrapes) -> tuple[Settings, dict]:
    root = tmp_path_factory.mktemp("demo")
    summary_path = root / "summary.json"
    code = main(
        [
            "demo",
            "--data-dir",
            str(root / "data"),
            "--init-max-evals",
            "2",
            "--max-evals",
            "2",
            "--count",
            "120",
            "--rate",
            "100",
            "--retrain-every",
            "50",
            "--summary-json",
            str(summary_path),
            "--metrics-port",
            str(demo_scrapes.port),
            "--metrics-host",
            "127.0.0.1",
        ]
    )
    demo_scrapes.done.set()
    demo_scrapes.join()
    assert code == 0
    return Settings(data_dir=root / "data"), json.loads(summary_path.read_text())


def test_every_request_answered_exactly_once_and_a_retrained_model_served(demo) -> None:
    settings, summary = demo
    assert summary["sent"] == summary["answered"] == 120
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    assert summary["retrains"] >= 1 and summary["promotions"] >= 1
    assert summary["serving_version"] > 1
    assert summary["serving_version"] == ModelStore(settings.models_dir).champion()
    assert sum(summary["model_versions"].values()) == 120
    assert 0.5 < summary["accuracy"] <= 1.0
    assert set(summary["latency_ms"]) >= {"p50", "p99"}


def test_the_recorder_stored_every_request_and_asked_for_each_retrain(demo) -> None:
    settings, summary = demo
    from streamfit.stores import ObservationStore

    store = ObservationStore(settings.store_url)
    assert store.count() == store.count(labelled=True) == summary["recorded"] == 120
    assert store.labelled_outcomes()["probability"].notna().all()
    assert summary["retrains_requested"] == store.retrain_mark() == 2  # at 50 and 100
    store.close()


def test_the_monitor_checked_the_stream_and_reports_performance(demo) -> None:
    _, summary = demo
    monitor = summary["monitor"]
    assert monitor["checks"] >= 1
    assert 0.5 < monitor["realised_accuracy"] <= 1.0  # the labels came inside the requests
    assert 0.5 < monitor["estimated_accuracy"] <= 1.0


def test_mlflow_holds_the_rounds_trials_and_registered_versions(demo) -> None:
    settings, summary = demo
    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    experiments = client.search_experiments()
    assert [e.name for e in experiments] == [settings.experiment]  # no stray "Default"
    runs = client.search_runs([experiments[0].experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 + summary["retrains"]
    assert {p.data.tags["trigger"] for p in parents} == {"initial", "retrain"}
    assert len(children) >= 2 * len(parents)
    versions = client.search_model_versions(f"name='{settings.registered_model}'")
    assert len(versions) == len(parents)


def test_the_champion_pyfunc_predicts_raw_rows(demo) -> None:
    settings, _ = demo
    mlflow.set_tracking_uri(settings.mlflow_uri)
    model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}@champion")
    raw = load_adult("test").head(25)[list(FEATURE_COLUMNS)]
    probabilities = model.predict(raw)
    assert len(probabilities) == 25
    assert all(0.0 < float(p) < 1.0 for p in probabilities)


def test_the_summary_is_a_short_table_a_person_reads(demo) -> None:
    _, summary = demo
    text = render_summary(summary)
    lines = text.splitlines()
    assert lines[0] == "demo summary" and "{" not in text  # no raw JSON
    rows = {line.split()[0]: line for line in lines[1:]}
    for row in ("sent", "answered", "retrains", "versions", "accuracy", "latency", "drift"):
        assert row in rows, text
    assert rows["sent"].split() == ["sent", "120"]
    assert "lost 0, duplicates 0" in rows["answered"]
    assert f"v{summary['serving_version']} serving" in rows["versions"]
    assert len(lines) <= 12


def test_the_mlflow_ui_command_works_from_any_directory_and_opens_the_runs(
    demo, tmp_path: Path
) -> None:
    settings, _ = demo
    hint = mlflow_ui_hint(settings)
    command = shlex.split(hint.splitlines()[1])
    experiment = MlflowClient(tracking_uri=settings.mlflow_uri).get_experiment_by_name(
        settings.experiment
    )
    assert hint.endswith(f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs")
    assert Path(command[0]).is_absolute() and command[1] == "ui"
    port = free_port()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ui = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=elsewhere,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its server's workers with it, stopped together below
    )
    try:
        url = (
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get?experiment_id="
            f"{experiment.experiment_id}"
        )
        deadline = time.monotonic() + 120
        while status(url) != 200 and time.monotonic() < deadline and ui.poll() is None:
            time.sleep(0.5)
        code, body = get(url)
        assert code == 200 and json.loads(body)["experiment"]["name"] == settings.experiment
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(30)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: streamfit " + command in capsys.readouterr().out


def test_a_bad_setting_exits_non_zero_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('retrain_every = "often"\n')
    assert main(["leaderboard", "--config", str(config)]) == 2
    assert "retrain_every" in capsys.readouterr().err


def test_the_demo_serves_its_four_services_probes_and_metrics(demo, demo_scrapes) -> None:
    _, summary = demo
    assert 200 in demo_scrapes.readyz and 200 in demo_scrapes.healthz
    # the endpoint lives as long as the demo
    assert status(f"http://127.0.0.1:{demo_scrapes.port}/readyz") is None
    assert demo_scrapes.metrics, "no /metrics scraped while the demo ran"
    last = demo_scrapes.metrics[-1]
    promtool_check(last)
    text = last.decode()
    for service in ("predictor", "recorder", "trainer", "monitor"):
        assert f"streamfit_{service}_ready" in text
    answered = [
        float(line.split()[-1])
        for body in demo_scrapes.metrics
        for line in body.decode().splitlines()
        if line.startswith("streamfit_predictions_total ")
    ]
    # a counter: never down; the last scrapes come after the app got every answer (the demo
    # then waits for the retrains)
    assert answered == sorted(answered) and answered[-1] == summary["answered"]


def test_a_canary_demo_reaches_a_live_decision_within_its_stream(tmp_path: Path) -> None:
    """120 requests at 100/s end long before the first round does: the stream must go on until
    the canary challenger is decided, every request still answered once."""
    summary_path = tmp_path / "summary.json"
    code = main(
        [
            "demo",
            *("--data-dir", str(tmp_path / "data"), "--summary-json", str(summary_path)),
            *("--init-max-evals", "2", "--max-evals", "2", "--count", "120", "--rate", "100"),
            *("--retrain-every", "50", "--promotion", "canary", "--canary-percent", "50"),
            *("--live-min-pairs", "20", "--live-max-pairs", "40", "--metrics-port", "0"),
        ]
    )
    summary = json.loads(summary_path.read_text())
    assert code == 0 and summary["lost"] == 0 and summary["duplicates"] == 0
    assert summary["sent"] == summary["answered"] > 120  # the stream went on
    decided = [c for c in summary["live_comparisons"] if c["decision"] != "running"]
    assert decided and decided[0]["policy"] == "canary" and decided[0]["pairs"] >= 20

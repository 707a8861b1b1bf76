"""``build_monitor``: metrics and charts reach the serving model's MLflow run; the reference and
the calibrator follow the champion."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest

from streamfit.bus import get_bus
from streamfit.config import Settings
from streamfit.monitoring import build_monitor
from streamfit.stores import ObservationStore
from streamfit.tracking import get_tracker
from tests.monitoring.test_monitor import _observations
from tests.serving.conftest import Registered, train_bundle


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, drift_window=400, drift_every=300, drift_reference_rows=2000)


def _champion(settings: Settings, run_id: str | None) -> int:
    """A new registered version made ``@champion`` (the registry is all the monitor reads)."""
    bundle = train_bundle(rounds=5, rows=1000)
    bundle.manifest["mlflow_run_id"] = run_id
    registered = Registered(settings, settings.mlflow_uri)
    version = registered.save(bundle)
    registered.promote(version)
    return version


def test_checks_log_to_the_serving_models_run(settings: Settings, adult_test: pd.DataFrame) -> None:
    from mlflow import MlflowClient

    tracker = get_tracker(settings)  # the real MLflow, SQLite in the data directory
    run_id = tracker.start_round("round-1", {"trigger": "initial"})
    tracker.end_round()
    _champion(settings, run_id)
    bus = get_bus(None)
    drift_topic = bus.consumer([settings.topics.drift], group="test")
    monitor = build_monitor(settings, bus, tracker=tracker)
    assert monitor.calibrator is not None  # fitted on the champion's holdout predictions

    shifted = adult_test.iloc[:400].copy()
    shifted["age"] = shifted["age"] + 25
    ObservationStore(settings.store_url).record(_observations(shifted, 0, version=1, labelled=True))
    report = monitor.run_once()
    assert report is not None and report.drifted

    client = MlflowClient(settings.mlflow_uri)
    history = client.get_metric_history(run_id, "drift.score")
    assert [(m.step, m.value) for m in history] == [(400, pytest.approx(report.drift))]
    metrics = client.get_run(run_id).data.metrics
    assert {"realised.accuracy", "version.1.auc", "estimated.accuracy", "drift.feature.age"} <= set(
        metrics
    )
    assert [a.path for a in client.list_artifacts(run_id, "drift")] == ["drift/drift-400.png"]
    event = orjson.loads(drift_topic.poll(1, timeout=1)[0].value)
    assert event == report.to_event()


def test_reference_and_calibrator_follow_the_champion(
    settings: Settings, adult_test: pd.DataFrame
) -> None:
    _champion(settings, None)  # no MLflow run: nothing is logged, nothing fails
    monitor = build_monitor(settings, get_bus(None), track=False)
    first_detector, first_calibrator = monitor.detector, monitor.calibrator
    ObservationStore(settings.store_url).record(
        _observations(adult_test.iloc[:300], 0, version=1, labelled=True)
    )
    assert monitor.run_once() is not None
    assert monitor.detector is first_detector  # same champion: same reference

    version = _champion(settings, None)
    monitor.run_once(force=True)
    assert monitor.refresh.version == version
    assert monitor.detector is not first_detector
    assert monitor.calibrator is not first_calibrator
    # the new reference holds what the new champion trained on: the labelled observations too
    assert monitor.detector.n_reference == first_detector.n_reference + 300


def test_the_champion_comes_from_the_registry_not_a_local_pointer(
    settings: Settings, tmp_path: Path
) -> None:
    """A monitor on a machine of its own: the trainer's data directory (local champion pointer,
    bundles) is elsewhere; the monitor fetches @champion into its own model cache."""
    trainer = settings.replace(data_dir=tmp_path / "trainer")
    monitor_settings = settings.replace(
        data_dir=tmp_path / "monitor", tracking_uri=settings.mlflow_uri, store=settings.store_url
    )
    tracker = get_tracker(trainer)
    run_id = tracker.start_round("round-1", {"trigger": "initial"})
    tracker.end_round()
    version = _champion(monitor_settings, run_id)
    monitor = build_monitor(monitor_settings, get_bus(None), track=False)
    assert monitor.refresh.version == version and monitor.calibrator is not None
    cached = monitor_settings.model_cache / f"v{version:06d}"
    assert {p.name for p in cached.iterdir()} == {
        "contract.json",
        "model.txt",
        "pipeline.json",
        "manifest.json",
    }
    assert not (tmp_path / "monitor" / "models").exists()
    newer = _champion(monitor_settings, None)
    monitor.run_once(force=True)
    assert monitor.refresh.version == newer


def test_a_promotion_is_followed_between_checks(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No traffic after a promotion: no check is due, yet the monitor follows the champion (its
    gauges and reference), at most every _FOLLOW_EVERY_S, not at every poll."""
    from streamfit.monitoring import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "_FOLLOW_EVERY_S", 3600.0)  # no interval passes by itself
    _champion(settings, None)
    monitor = build_monitor(settings, get_bus(None), track=False)
    first = monitor.refresh.version
    version = _champion(settings, None)
    assert monitor.run_once() is None  # nothing recorded: no check due
    assert monitor.refresh.version == version != first  # followed at the first poll
    newer = _champion(settings, None)
    assert monitor.run_once() is None
    assert monitor.refresh.version == version  # not at every poll
    monitor._follow_at = 0.0  # the interval has passed
    assert monitor.run_once() is None and monitor.refresh.version == newer

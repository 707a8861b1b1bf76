"""The monitor reads the observation store and publishes drift events on the drift topic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from streamfit.bus import get_bus
from streamfit.config import Settings
from streamfit.datasets.adult import CONTRACT, FEATURE_COLUMNS
from streamfit.messages import DRIFT_EVENT_KEYS as EVENT_KEYS
from streamfit.monitoring import OutputDrift
from streamfit.monitoring.monitor import Monitor
from streamfit.stores import ObservationBatch, ObservationStore


def _model(rows: pd.DataFrame, seed: int) -> np.ndarray:
    """A weakly informative "model": the label plus noise, squashed to (0, 1)."""
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(2.0 * rows["label"].to_numpy() - 1 + rng.normal(0, 1.2, len(rows)))))


def _observations(rows: pd.DataFrame, start: int, version: int, labelled: bool) -> ObservationBatch:
    """What the recorder would store for ``rows``: requests, predictions and maybe labels."""
    proba = _model(rows, start)
    records = rows[list(FEATURE_COLUMNS)].astype(object).where(rows.notna(), None)
    batch = ObservationBatch()
    for i, (record, p, label) in enumerate(
        zip(records.to_dict("records"), proba, rows["label"], strict=True)
    ):
        request_id = f"r{start + i}"
        batch.requests.append((request_id, orjson.dumps(record)))
        batch.predictions.append((request_id, float(p), version))
        if labelled:
            batch.labels.append((request_id, int(label)))
    return batch


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        drift_window=400,
        drift_every=300,
        drift_reference_rows=2000,
        monitor_poll_seconds=0.05,
    )


def test_checks_publish_events_and_metrics(
    settings: Settings, reference: pd.DataFrame, adult_test: pd.DataFrame
) -> None:
    bus = get_bus(None)
    drift_topic = bus.consumer([settings.topics.drift], group="test")
    store = ObservationStore(settings.store_url)
    logged: list[tuple[dict[str, float], int]] = []
    monitor = Monitor(
        settings,
        bus,
        reference,
        contract=CONTRACT,
        store=store,
        log_metrics=lambda metrics, step: logged.append((metrics, step)),
        report_dir=settings.data_dir / "charts",
        output=OutputDrift().fit(_model(reference, 99), reference["label"].to_numpy()),
    )
    assert monitor.run_once() is None  # nothing to check yet

    calm = adult_test.iloc[:400]
    store.record(_observations(calm, 0, version=1, labelled=True))
    report = monitor.run_once()
    assert report is not None and not report.drifted, report.table()
    assert monitor.run_once() is None  # no new observations since

    shifted = adult_test.iloc[400:800].copy()
    shifted["age"] = shifted["age"] + 25
    store.record(_observations(shifted, 400, version=2, labelled=False))
    report = monitor.run_once()
    assert report is not None and report.drifted and report.ranking()[0] == "age"

    events = [orjson.loads(m.value) for m in drift_topic.poll(10, timeout=1)]
    assert [e["drifted"] for e in events] == [False, True]
    # Output and label drift of the same "model" on undrifted rows: nothing; 400 labelled rows.
    assert events[0]["output"]["drifted"] is False and events[0]["output"]["n"] == 400
    assert events[0]["labels"]["drifted"] is False and events[0]["labels"]["n"] == 400
    assert events[1] == report.to_event()
    assert events[1]["window_end"] == 800
    assert set(events[1]["features"]["age"]) == {"score", "p_value", "psi", "drifted"}
    assert (settings.data_dir / "charts" / "drift-800.png").exists()
    # The sequential layer saw only the 400 new rows: age's evidence crossed its threshold at once.
    assert events[1]["sequential"]["features"][0] == "age"
    assert events[1]["sequential"]["evidence"]["age"] > events[1]["sequential"]["threshold"]
    assert monitor.sequential.blocks == []  # restarted after the alarm
    assert logged[-1][0]["drift.sequential.age"] == events[1]["sequential"]["evidence"]["age"]

    metrics, step = logged[-1]
    assert step == 800 and metrics["drift.drifted"] == 1.0  # step: observations in store
    labelled = store.labelled_frame()
    y, p = labelled["label"].to_numpy(int), labelled["probability"].to_numpy()
    assert metrics["realised.accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5))
    assert metrics["version.1.auc"] == pytest.approx(roc_auc_score(y, p))
    assert "version.2.auc" not in metrics  # version 2 has no labels yet
    assert 0.5 < metrics["estimated.accuracy"] < 1.0  # from the unlabelled version-2 window


def test_after_an_alarm_the_window_holds_only_newer_requests(
    settings: Settings, reference: pd.DataFrame, adult_test: pd.DataFrame
) -> None:
    # The restart (AlarmBudget.window_rows): no request takes part in two alarms, so one stretch
    # of shifted requests raises one alarm, not one at every check whose window still holds it.
    store = ObservationStore(settings.store_url)
    monitor = Monitor(settings, get_bus(None), reference, contract=CONTRACT, store=store)
    shifted = adult_test.iloc[:400].copy()
    shifted["age"] = shifted["age"] + 25
    store.record(_observations(shifted, 0, version=1, labelled=False))
    report = monitor.run_once()
    assert report is not None and report.drifted and monitor.alarm_count == 400
    assert monitor.sequential.blocks == []
    store.record(_observations(adult_test.iloc[400:700], 400, version=1, labelled=False))
    report = monitor.run_once()
    # The last 400 requests hold 100 of the shifted ones: without the restart, a second alarm.
    assert report is not None and report.n_current == 300, report.table()
    assert not report.drifted, report.table()
    store.record(_observations(adult_test.iloc[700:1000], 700, version=1, labelled=False))
    report = monitor.run_once()
    assert report is not None and report.n_current == 400 and not report.drifted


def test_thread_publishes_and_stops(
    settings: Settings, reference: pd.DataFrame, adult_test: pd.DataFrame
) -> None:
    bus = get_bus(None)
    drift_topic = bus.consumer([settings.topics.drift], group="test")
    store = ObservationStore(settings.store_url)
    with Monitor(settings, bus, reference, contract=CONTRACT, store=store) as monitor:
        store.record(_observations(adult_test.iloc[:350], 0, version=1, labelled=False))
        messages = drift_topic.poll(1, timeout=20)
    assert not monitor.running and not monitor._thread.is_alive()
    assert len(messages) == 1
    event = orjson.loads(messages[0].value)
    assert set(event) == {*EVENT_KEYS}
    assert monitor.snapshot()["event"] == event


def test_a_new_monitor_resumes_after_the_last_published_check(
    settings: Settings, reference: pd.DataFrame, adult_test: pd.DataFrame
) -> None:
    bus = get_bus(None)
    drift_topic = bus.consumer([settings.topics.drift], group="test")
    store = ObservationStore(settings.store_url)
    store.record(_observations(adult_test.iloc[:350], 0, version=1, labelled=False))
    with Monitor(settings, bus, reference, contract=CONTRACT, store=store):
        first = drift_topic.poll(1, timeout=20)
    assert orjson.loads(first[0].value)["window_end"] == 350
    # A replacement (the first one killed) finds that check on the topic and does not repeat it.
    replacement = Monitor(settings, bus, reference, contract=CONTRACT, store=store)
    with replacement:
        assert drift_topic.poll(1, timeout=1) == []
        store.record(_observations(adult_test.iloc[350:650], 350, version=1, labelled=False))
        after = drift_topic.poll(1, timeout=20)
    assert orjson.loads(after[0].value)["window_end"] == 650
    # A store started afresh (fewer observations than the last check): checks start over.
    fresh = ObservationStore(f"sqlite:///{settings.data_dir / 'fresh.db'}")
    fresh.record(_observations(adult_test.iloc[:320], 0, version=1, labelled=False))
    with Monitor(settings, bus, reference, contract=CONTRACT, store=fresh):
        again = drift_topic.poll(1, timeout=20)
    assert orjson.loads(again[0].value)["window_end"] == 320


@pytest.mark.parametrize("drifted", [True, False])
def test_a_resumed_monitor_keeps_the_restart_of_the_last_alarm(
    settings: Settings, reference: pd.DataFrame, adult_test: pd.DataFrame, drifted: bool
) -> None:
    # A replacement monitor must not alarm again on the rows of its predecessor's last alarm.
    bus = get_bus(None)
    store = ObservationStore(settings.store_url)
    store.record(_observations(adult_test.iloc[:350], 0, version=1, labelled=False))
    producer = bus.producer()
    producer.produce(settings.topics.drift, orjson.dumps({"window_end": 350, "drifted": drifted}))
    producer.flush()
    monitor = Monitor(settings, bus, reference, contract=CONTRACT, store=store)
    assert monitor._resume_point() == 350
    assert monitor.alarm_count == (350 if drifted else 0)


def test_drift_settings_are_validated() -> None:
    from streamfit.config import ConfigError

    with pytest.raises(ConfigError, match="drift_folds"):
        Settings(drift_folds=1)
    with pytest.raises(ConfigError, match="drift_classifier"):
        Settings(drift_classifier="svm")
    assert Settings.load(environ={"STREAMFIT_DRIFT_ALPHA": "0.05"}).drift_alpha == 0.05

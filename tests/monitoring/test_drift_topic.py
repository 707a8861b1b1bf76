"""A drift event reaches the ``drift`` topic, on the in-process bus and on the real broker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pandas as pd

from streamfit.bus import Bus
from streamfit.config import Settings, Topics
from streamfit.datasets.adult import CONTRACT
from streamfit.monitoring import Monitor
from streamfit.stores import ObservationStore
from tests.monitoring.test_monitor import _observations


def test_drifted_window_is_published_on_the_drift_topic(
    bus: Bus, tmp_path: Path, reference: pd.DataFrame, adult_test: pd.DataFrame
) -> None:
    topic = f"test-drift-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        data_dir=tmp_path,
        topics=Topics(drift=topic),
        drift_window=400,
        drift_every=300,
        drift_reference_rows=2000,
    )
    bus.ensure_topics({topic: 1})
    store = ObservationStore(settings.store_url)
    shifted = adult_test.iloc[:400].copy()
    shifted["hours_per_week"] = shifted["hours_per_week"] * 1.5
    store.record(_observations(shifted, 0, version=1, labelled=False))
    monitor = Monitor(settings, bus, reference, contract=CONTRACT, store=store)
    report = monitor.run_once()
    monitor.close()
    assert report is not None and report.drifted

    with bus.consumer([topic], group=f"reader-{uuid.uuid4().hex[:6]}") as consumer:
        got, deadline = [], time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = consumer.poll(10, timeout=0.5)
    assert len(got) == 1
    event = orjson.loads(got[0].value)
    assert event == report.to_event()
    assert event["drifted"] is True and event["window_end"] == 400
    assert event["features"]["hours_per_week"]["drifted"] is True
    assert set(event["features"]["hours_per_week"]) == {"score", "p_value", "psi", "drifted"}

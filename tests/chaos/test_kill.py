"""SIGKILL of each service at a random point (seeded): the predictor mid-stream under
exactly-once, the recorder mid-stream with late labels, the trainer mid-round. A supervisor
(here, the test) starts a replacement at once; nothing is lost, nothing answered twice."""

from __future__ import annotations

import random
import signal
import time

import orjson
import pytest

from streamfit import messages
from streamfit.stores import ObservationStore
from tests.chaos.conftest import (
    FAST_GROUP,
    SEEDS,
    champion,
    lenient_env,
    start_app,
    wait_until,
)

pytestmark = pytest.mark.kafka


def _kill(process) -> float:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return time.monotonic()


@pytest.mark.parametrize("seed", SEEDS)
def test_predictor_sigkilled_at_a_random_point_loses_and_duplicates_nothing(
    deployment, chaos_report, seed
):
    rng = random.Random(seed)
    args = ("--guarantee", "exactly-once", *FAST_GROUP)
    first = deployment.start("predictor", *args, name="predictor-a")
    deployment.wait_for_log(first, "predictor consuming")
    app, summary_path = start_app(deployment, "app", "--count", "1500", "--rate", "500")
    deployment.wait_for_log(app, "sent ")  # the stream is flowing
    time.sleep(rng.uniform(0.0, 2.5))
    killed = _kill(first)
    second = deployment.start("predictor", *args, name="predictor-b")
    deployment.wait_for_log(second, "predictor consuming")
    recovery = time.monotonic() - killed
    summary = deployment.app_summary(app, summary_path, timeout=400)
    chaos_report.add(
        "SIGKILL predictor (exactly-once)",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=summary["duplicates"],
        recovery_s=recovery,
    )
    assert summary["sent"] == 1500
    assert summary["answered"] == 1500 and summary["lost"] == 0
    assert summary["duplicates"] == 0  # the app reads predictions read_committed
    assert second.poll() is None


@pytest.mark.parametrize("seed", SEEDS)
def test_recorder_sigkilled_at_a_random_point_records_everything_once(
    deployment, chaos_report, seed
):
    rng = random.Random(100 + seed)
    bus = deployment.bus()
    retrains = bus.consumer([deployment.topics.retrain], group=None)
    retrains.poll(1, timeout=1)  # positioned before anything is published
    predictor = deployment.start("predictor", *FAST_GROUP)
    recorder_args = ("--retrain-every", "200", *FAST_GROUP)
    first = deployment.start("recorder", *recorder_args, name="recorder-a")
    deployment.wait_for_log(predictor, "predictor consuming")
    deployment.wait_for_log(first, "recorder consuming")
    app, summary_path = start_app(
        deployment, "app", "--count", "1000", "--rate", "400", "--label-delay", "0.5"
    )
    deployment.wait_for_log(app, "sent ")
    time.sleep(rng.uniform(0.0, 3.0))
    killed = _kill(first)
    second = deployment.start("recorder", *recorder_args, name="recorder-b")
    deployment.wait_for_log(second, "recorder consuming")
    recovery = time.monotonic() - killed
    summary = deployment.app_summary(app, summary_path, timeout=400)
    assert summary["lost"] == 0 and summary["sent"] == 1000

    store = ObservationStore(deployment.settings.store_url)
    try:
        wait_until(lambda: store.count(labelled=True) == 1000, 180, "every labelled observation")
        recorded, labelled = store.count(), store.count(labelled=True)
    finally:
        store.close()
    thresholds: list[int] = []
    wait_until(
        lambda: (
            thresholds.extend(
                orjson.loads(m.value)["threshold"] for m in retrains.poll(100, timeout=0.5)
            )
            or set(thresholds) >= {200, 400, 600, 800, 1000}
        ),
        120,
        "a retrain command per threshold",
    )
    retrains.close()
    bus.close()
    chaos_report.add(
        "SIGKILL recorder (late labels)",
        requests=summary["sent"],
        lost=summary["sent"] - recorded,
        duplicates=len(thresholds) - len(set(thresholds)),  # outbox: at-least-once
        recovery_s=recovery,
    )
    assert recorded == labelled == 1000
    assert sorted(set(thresholds)) == [200, 400, 600, 800, 1000]


@pytest.mark.parametrize("seed", SEEDS)
def test_trainer_sigkilled_mid_round_the_replacement_runs_it(deployment, chaos_report, seed):
    rng = random.Random(200 + seed)
    bus = deployment.bus()
    models = bus.consumer([deployment.topics.models], group=None)
    models.poll(1, timeout=1)
    args = ("--max-evals", "3", *FAST_GROUP)
    first = deployment.start("trainer", *args, name="trainer-a", env=lenient_env())
    deployment.wait_for_log(first, "trainer waiting")
    with bus.producer() as producer:
        producer.produce(deployment.topics.retrain, messages.retrain("chaos", 0))
    deployment.wait_for_log(first, "retraining (", timeout=120)
    time.sleep(rng.uniform(0.0, 6.0))
    finished_before_kill = "round done" in deployment.log(first)
    killed = _kill(first)
    second = deployment.start("trainer", *args, name="trainer-b", env=lenient_env())
    deployment.wait_for_log(second, "trainer waiting")
    if not finished_before_kill:
        deployment.wait_for_log(second, "round done", timeout=600)
    recovery = time.monotonic() - killed
    events: list[dict] = []
    wait_until(
        lambda: (
            events.extend(orjson.loads(m.value) for m in models.poll(10, timeout=0.5)) or events
        ),
        120,
        "the round's announcement",
    )
    time.sleep(2)
    events += [orjson.loads(m.value) for m in models.poll(10, timeout=1)]
    models.close()
    bus.close()
    chaos_report.add(
        "SIGKILL trainer mid-round",
        requests=1,  # the retrain command
        lost=0 if events else 1,
        duplicates=len(events) - 1,
        recovery_s=recovery,
    )
    assert len(events) == 1, events  # one round announced, not two
    assert champion(deployment) == events[0]["version"] > 1
    assert second.poll() is None


@pytest.mark.parametrize("seed", SEEDS)
def test_monitor_sigkilled_at_a_random_point_its_replacement_carries_on(
    deployment, chaos_report, seed
):
    """The monitor publishes no request, but its drift events drive retraining: the replacement
    carries on after the last published check (read back from the drift topic) and repeats
    none of them."""
    rng = random.Random(300 + seed)
    bus = deployment.bus()
    drift = bus.consumer([deployment.topics.drift], group=None)
    drift.poll(1, timeout=1)
    predictor = deployment.start("predictor", *FAST_GROUP)
    recorder = deployment.start("recorder", "--retrain-every", "100000", *FAST_GROUP)
    monitor_args = ("--drift-every", "150", "--drift-window", "300", "--no-tracking")
    first = deployment.start("monitor", *monitor_args, name="monitor-a")
    deployment.wait_for_log(predictor, "predictor consuming")
    deployment.wait_for_log(recorder, "recorder consuming")
    deployment.wait_for_log(first, "monitor: checking", timeout=180)
    app, summary_path = start_app(
        deployment, "app", "--count", "3000", "--rate", "200", "--label-delay", "0.5"
    )
    deployment.wait_for_log(first, "drift check 1 ", timeout=180)
    time.sleep(rng.uniform(0.0, 2.0))
    killed = _kill(first)
    events: list[dict] = []

    def read_events() -> None:
        events.extend(orjson.loads(m.value) for m in drift.poll(100, timeout=0.5))

    read_events()
    before_kill = len(events)
    second = deployment.start("monitor", *monitor_args, name="monitor-b")
    wait_until(lambda: read_events() or len(events) > before_kill, 180, "a check after the kill")
    recovery = time.monotonic() - killed
    summary = deployment.app_summary(app, summary_path, timeout=400)
    wait_until(
        lambda: read_events() or max(e["window_end"] for e in events) >= 2850,
        180,
        "checks up to the end of the stream",
    )
    drift.close()
    bus.close()
    ends = [e["window_end"] for e in events]
    chaos_report.add(
        "SIGKILL monitor",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=len(ends) - len(set(ends)),  # a check published twice
        recovery_s=recovery,
    )
    assert summary["lost"] == 0 and summary["answered"] == 3000
    assert len(ends) == len(set(ends)) and ends == sorted(ends), ends
    assert "resuming after the drift check at" in deployment.log(second)
    assert second.poll() is None

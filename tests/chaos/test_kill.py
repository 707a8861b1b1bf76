"""SIGKILL of each service at a random point (seeded): the predictor mid-stream (under each
guarantee), the recorder mid-stream with late labels, the trainer mid-round. A supervisor (here,
the test) starts a replacement at once, on the defaults: it joins under its predecessor's group
member id (streamfit/instance.py) and takes over at once; nothing is lost, and under
exactly-once nothing answered twice. Recovery is clocked from the kill to the replacement's
first answer or recorded request: the work a user waits for, not a log line."""

from __future__ import annotations

import random
import signal
import time

import orjson
import pytest
import sqlalchemy as sa

from streamfit import messages
from streamfit.stores import ObservationStore
from streamfit.stores.observations import observations_table
from tests.chaos.conftest import (
    CATCH_UP_EXACTLY_ONCE_S,
    CATCH_UP_S,
    SEEDS,
    Tail,
    lenient_env,
    start_app,
)
from tests.harness import champion, wait_until

pytestmark = pytest.mark.kafka


def _kill(process) -> float:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return time.monotonic()


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
@pytest.mark.parametrize("seed", SEEDS)
def test_predictor_sigkilled_at_a_random_point_its_replacement_answers_the_rest_at_once(
    deployment, chaos_report, seed, guarantee
):
    """On the defaults: the replacement joins under the killed predictor's id and takes its
    partitions at once, so every request sent before the replacement started is answered
    within 10 s of its start. Recovery is clocked from the kill to the first answer the
    replacement produced, as the app sees it."""
    rng = random.Random(seed)
    count, partitions = 3000, deployment.settings.request_partitions
    bus = deployment.bus()
    sent = Tail(bus, deployment.topics.requests)
    answers = Tail(bus, deployment.topics.predictions)  # read_committed, as the app reads
    args = ("--guarantee", guarantee)
    first = deployment.start("predictor", *args, name="predictor-a")
    deployment.wait_for_log(first, "predictor consuming")
    app, summary_path = start_app(deployment, "app", "--count", str(count), "--rate", "500")
    kill_after = rng.randint(100, count // 2)  # answers: mid-stream
    wait_until(lambda: answers.read() or len(answers.ids()) >= kill_after, 120, "answers")
    killed, killed_at = _kill(first), time.time()
    second = deployment.start("predictor", *args, name="predictor-b")
    started, started_at = time.monotonic(), time.time()

    def caught_up() -> bool:
        sent.read()
        answers.read()
        waiting = sent.produced_by(started_at, partitions, count)
        return waiting is not None and waiting <= answers.ids()

    wait_until(caught_up, 300, "the requests sent before the replacement started answered")
    caught_up_s = time.monotonic() - started
    wait_until(lambda: answers.read() or answers.first_seen_after(killed_at), 120, "a new answer")
    recovery = answers.first_seen_after(killed_at) - killed
    summary = deployment.app_summary(app, summary_path, timeout=400)
    sent.close()
    answers.close()
    bus.close()
    chaos_report.add(
        f"SIGKILL predictor ({guarantee})",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=summary["duplicates"],
        recovery_s=recovery,
    )
    assert summary["sent"] == count
    assert summary["answered"] == count and summary["lost"] == 0
    if guarantee == "exactly-once":
        assert summary["duplicates"] == 0  # the app reads predictions read_committed
    bound = CATCH_UP_EXACTLY_ONCE_S if guarantee == "exactly-once" else CATCH_UP_S
    assert caught_up_s <= bound, f"caught up {caught_up_s:.1f} s after the restart"
    assert second.poll() is None


@pytest.mark.postgres
@pytest.mark.parametrize("seed", SEEDS)
def test_recorder_sigkilled_at_a_random_point_its_replacement_records_the_rest_at_once(
    deployment, postgres_schema_url, chaos_report, seed
):
    """On the defaults, over PostgreSQL: every request sent before the replacement started is
    in the store within 10 s of its start, and in the end every observation is there once.
    Recovery is clocked from the kill to the first request the replacement recorded."""
    rng = random.Random(100 + seed)
    count, every = 2000, 200
    bus = deployment.bus()
    retrains = bus.consumer([deployment.topics.retrain], group=None)
    retrains.poll(1, timeout=1)  # positioned before anything is published
    sent = Tail(bus, deployment.topics.requests)
    store = ObservationStore(postgres_schema_url)
    engine = sa.create_engine(postgres_schema_url)
    query = sa.select(observations_table.c.request_id).where(observations_table.c.data.is_not(None))

    def stored() -> set[str]:
        with engine.connect() as db:
            return set(db.scalars(query))

    predictor = deployment.start("predictor")
    recorder_args = ("--retrain-every", str(every), "--store", postgres_schema_url)
    first = deployment.start("recorder", *recorder_args, name="recorder-a")
    deployment.wait_for_log(predictor, "predictor consuming")
    deployment.wait_for_log(first, "recorder consuming")
    app, summary_path = start_app(
        deployment, "app", "--count", str(count), "--rate", "400", "--label-delay", "0.5"
    )
    kill_after = rng.randint(100, count // 2)  # recorded: mid-stream
    wait_until(lambda: store.count() >= kill_after, 120, f"{kill_after} recorded")
    killed = _kill(first)
    before_kill = stored()
    second = deployment.start("recorder", *recorder_args, name="recorder-b")
    started, started_at = time.monotonic(), time.time()
    first_recorded: list[float] = []

    def caught_up() -> bool:
        sent.read()
        recorded = stored()
        if not first_recorded and recorded - before_kill:
            first_recorded.append(time.monotonic())
        waiting = sent.produced_by(started_at, deployment.settings.request_partitions, count)
        return waiting is not None and waiting <= recorded

    wait_until(caught_up, 300, "the requests sent before the replacement started recorded")
    caught_up_s = time.monotonic() - started
    wait_until(lambda: (caught_up(), first_recorded)[1], 120, "a request recorded")
    recovery = first_recorded[0] - killed
    summary = deployment.app_summary(app, summary_path, timeout=400)
    assert summary["lost"] == 0 and summary["sent"] == count
    try:
        wait_until(lambda: store.count(labelled=True) == count, 180, "every labelled observation")
        recorded, labelled = store.count(), store.count(labelled=True)
    finally:
        store.close()
        engine.dispose()
    thresholds: list[int] = []
    wait_until(
        lambda: (
            thresholds.extend(
                orjson.loads(m.value)["threshold"] for m in retrains.poll(100, timeout=0.5)
            )
            or set(thresholds) >= set(range(every, count + 1, every))
        ),
        120,
        "a retrain command per threshold",
    )
    retrains.close()
    sent.close()
    bus.close()
    chaos_report.add(
        "SIGKILL recorder (late labels, PostgreSQL)",
        requests=summary["sent"],
        lost=summary["sent"] - recorded,
        duplicates=len(thresholds) - len(set(thresholds)),  # outbox: at-least-once
        recovery_s=recovery,
    )
    assert recorded == labelled == count
    assert sorted(set(thresholds)) == list(range(every, count + 1, every))
    assert caught_up_s <= CATCH_UP_S, f"caught up {caught_up_s:.1f} s after the restart"
    assert second.poll() is None


@pytest.mark.parametrize("seed", SEEDS)
def test_trainer_sigkilled_mid_round_the_replacement_runs_it(deployment, chaos_report, seed):
    rng = random.Random(200 + seed)
    bus = deployment.bus()
    models = bus.consumer([deployment.topics.models], group=None)
    models.poll(1, timeout=1)
    args = ("--max-evals", "3")
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
    predictor = deployment.start("predictor")
    recorder = deployment.start("recorder", "--retrain-every", "100000")
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

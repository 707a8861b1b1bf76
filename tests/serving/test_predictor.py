from __future__ import annotations

import functools
import gc
import threading
import time

import orjson
import pytest

from streamfit import messages
from streamfit.bus import MemoryBus
from streamfit.serving import Predictor
from streamfit.serving import predictor as predictor_module
from tests.harness import wait_until
from tests.serving.conftest import Running, train_bundle


def _predictions(batch, topic="predictions"):
    return [orjson.loads(m.value) for m in batch if m.topic == topic]


def test_every_request_is_answered_with_a_probability(running, requests_data, store):
    for i, row in enumerate(requests_data[:30]):
        running.send("requests", messages.request(f"r{i}", row))
    answers = _predictions(running.collect(30))
    assert sorted(a["request_id"] for a in answers) == sorted(f"r{i}" for i in range(30))
    expected = store.load(store.champion()).predict_records(requests_data[:30])
    by_id = {a["request_id"]: a for a in answers}
    for i, probability in enumerate(expected):
        answer = by_id[f"r{i}"]
        assert answer["probability"] == pytest.approx(probability)
        assert answer["label"] == int(probability >= 0.5)
        assert answer["model_version"] == 1


def test_hot_swap_switches_the_version_predictions_carry(running, requests_data, store):
    running.send("requests", messages.request("before", requests_data[0]))
    assert _predictions(running.collect(1))[0]["model_version"] == 1
    new_version = store.save(train_bundle(rounds=30, seed=1))
    running.send("models", messages.model_ready(new_version, "promoted"))
    wait_until(
        lambda: running.predictor.model_version == new_version,
        20,
        "the new model served",
        every=0.02,
    )
    running.send("requests", messages.request("after", requests_data[1]))
    answer = _predictions(running.collect(1))[0]
    assert answer["request_id"] == "after" and answer["model_version"] == new_version
    # the new model really is the one predicting, not just its number
    assert answer["probability"] == pytest.approx(
        store.load(new_version).predict_records([requests_data[1]])[0]
    )


def test_tampered_bundle_is_refused_and_old_model_keeps_serving(running, requests_data, store):
    bad = store.save(train_bundle(rounds=5))
    # bytes changed after registration, where the tracking server keeps them
    store.artifact_file(bad).write_text("this is not a LightGBM model")
    running.send("models", messages.model_ready(bad, "promoted"))
    wait_until(
        lambda: running.predictor.stats.refused_models == 1, 20, "the model refused", every=0.02
    )
    assert running.predictor.stats.integrity_refusals == 1
    running.send("requests", messages.request("still-served", requests_data[0]))
    answer = _predictions(running.collect(1))[0]
    assert answer["model_version"] == 1


def test_bundle_whose_features_do_not_match_is_refused(running, store):
    bundle = train_bundle(rounds=5)
    bundle.pipeline.numeric.pop("age")  # pipeline now disagrees with the model's feature count
    bad = store.save(bundle)
    running.send("models", messages.model_ready(bad, "promoted"))
    wait_until(
        lambda: running.predictor.stats.refused_models == 1, 20, "the model refused", every=0.02
    )
    assert running.predictor.model_version == 1


BAD_INPUTS = [
    (b"{not json", None, "invalid JSON at character 1"),
    (b'{"request_id": "no-data"}', "no-data", "missing 'data'"),
    (b'{"data": {"age": 30}}', None, "request_id"),
    (b'{"request_id": "wrong-type", "data": {"age": "thirty"}}', "wrong-type", "must be a number"),
    (b'{"request_id": "unknown", "data": {"shoe_size": 44}}', "unknown", "unknown column"),
    (b'{"request_id": "not-object", "data": [1, 2]}', "not-object", "must be an object"),
    (b"[]", None, "JSON object"),
    # The poison pill: a request_id that is not UTF-8 once stopped every predictor of the group.
    (b'{"request_id": "ab\xed\xa0\x80", "data": {}}', None, "invalid UTF-8 at byte 18"),
    (b"\xff\xfe\x00", None, "invalid UTF-8 at byte 0"),
]


def test_bad_input_is_dead_lettered_and_neighbours_still_answered(running, requests_data):
    for i, (payload, _, _) in enumerate(BAD_INPUTS):
        running.send("requests", messages.request(f"good{i}", requests_data[i]))
        running.send("requests", payload)
    batch = running.collect(2 * len(BAD_INPUTS))
    answered = {a["request_id"] for a in _predictions(batch)}
    assert answered == {f"good{i}" for i in range(len(BAD_INPUTS))}
    dead = _predictions(batch, "dead_letter")
    assert len(dead) == len(BAD_INPUTS)
    for record, (payload, request_id, reason) in zip(dead, BAD_INPUTS, strict=True):
        assert reason in record["error"]
        assert record.get("request_id") == request_id
        assert record["payload"] == payload.decode(errors="replace")


def test_a_label_inside_the_request_is_never_fed_to_the_model(running, requests_data):
    row = dict(requests_data[0], income_bracket=">50K")
    flipped = dict(row, income_bracket="<=50K")
    running.send("requests", messages.request("a", row))
    running.send("requests", messages.request("b", flipped))
    answers = {a["request_id"]: a for a in _predictions(running.collect(2))}
    assert answers["a"]["probability"] == answers["b"]["probability"]
    assert set(answers["a"]) == {"request_id", "probability", "label", "model_version"}


def test_labels_and_retrains_are_not_the_predictors_business(running, requests_data):
    """The recorder joins labels and asks for retrains: the predictor never reads ``labels``
    and never publishes on ``retrain``, however many labelled requests it answers."""
    running.send("labels", messages.label("x", 1))
    for i in range(45):  # more than retrain_every (20) labelled requests
        running.send("requests", messages.request(f"l{i}", requests_data[i]))
    batch = running.collect(46, timeout=2)
    assert sorted(m.topic for m in batch) == ["predictions"] * 45


class _FailsOnBoom(Predictor):
    """A predictor with a bug that only one request triggers, after its batch's output."""

    def _predict(self, requests, producer):
        super()._predict(requests, producer)
        if any(b'"boom' in m.value for m in requests):
            raise RuntimeError("boom went off")


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_an_unexpected_exception_dead_letters_its_message_only(
    settings, store, requests_data, guarantee
):
    service = Running(settings.replace(guarantee=guarantee), _FailsOnBoom)
    try:
        for i in range(3):
            service.send("requests", messages.request(f"ok{i}", requests_data[i]))
        service.send("requests", messages.request("boom", requests_data[3]))
        service.send("requests", messages.request("ok3", requests_data[4]))
        batch = service.collect(5)
        answered = [a["request_id"] for a in _predictions(batch)]
        assert sorted(answered) == ["ok0", "ok1", "ok2", "ok3"]  # each once, boom not at all
        dead = _predictions(batch, "dead_letter")
        assert len(dead) == 1
        assert "RuntimeError: boom went off" in dead[0]["error"]
        assert orjson.loads(dead[0]["payload"])["request_id"] == "boom"
        # ... and the loop goes on
        service.send("requests", messages.request("after", requests_data[5]))
        assert [a["request_id"] for a in _predictions(service.collect(1))] == ["after"]
    finally:
        service.stop()


class _PollRecorder(Predictor):
    """Records each poll's size and each micro-batch the model gets."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.polls: list[int] = []
        self.micro_batches: list[int] = []

    def _process_micro_batches(self, polled, producer, started) -> float:
        self.polls.append(len(polled))
        return super()._process_micro_batches(polled, producer, started)

    def process(self, batch, producer) -> None:
        self.micro_batches.append(len(batch))
        super().process(batch, producer)


@pytest.mark.parametrize("batches_per_commit", [1, 4])
def test_a_backlog_is_answered_in_micro_batches_acknowledged_together(
    settings, store, requests_data, batches_per_commit, monkeypatch
):
    """Requests waiting before the start: each poll takes up to max_batch x batches_per_commit
    of them (one acknowledgement), the model gets them max_batch at a time; all answered. Once
    caught up, the heap is trimmed once (what the backlog took goes back to the system)."""
    trims = []
    monkeypatch.setattr(predictor_module, "release_freed_memory", lambda: trims.append(1))
    settings = settings.replace(max_batch=50, batches_per_commit=batches_per_commit)
    bus = MemoryBus()
    with bus.producer() as producer:
        for i in range(1000):
            row = requests_data[i % len(requests_data)]
            producer.produce(settings.topics.requests, messages.request(f"r{i}", row))
    listener = bus.consumer([settings.topics.predictions], group=None)
    predictor = _PollRecorder(settings, bus)
    thread = threading.Thread(target=predictor.run, daemon=True)
    thread.start()
    try:
        answered: set[str] = set()
        deadline = time.monotonic() + 60
        while len(answered) < 1000 and time.monotonic() < deadline:
            answered |= {orjson.loads(m.value)["request_id"] for m in listener.poll(1000, 0.5)}
        assert len(answered) == 1000
        assert max(predictor.micro_batches) == 50 and sum(predictor.micro_batches) == 1000
        assert max(predictor.polls) == 50 * batches_per_commit
        # every micro-batch is timed once (the last of a poll with its acknowledgement)
        timed = predictor.metrics.value("streamfit_predictor_batch_seconds_count")
        assert timed == len(predictor.micro_batches)
        # idle polls: caught up, so the heap is trimmed once
        wait_until(lambda: trims, 20, "the heap trimmed", every=0.02)
        assert len(trims) == 1
    finally:
        predictor.stop()
        thread.join(10)


def test_only_a_predictor_owning_its_process_tunes_the_garbage_collector(settings, store):
    """``streamfit predictor`` (owns_process): rarer young collections, and what is loaded
    before it consumes frozen out of full collections. Embedded, it leaves the process alone."""
    before = gc.get_threshold()
    service = Running(settings)
    try:
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    finally:
        service.stop()
    service = Running(settings, functools.partial(Predictor, owns_process=True))
    try:
        assert gc.get_threshold() == (50_000, 20, 100)
        assert gc.get_freeze_count() > 10_000  # the libraries and the model, at least
    finally:
        service.stop()
        gc.unfreeze()
        gc.set_threshold(*before)


def test_stop_cuts_short_the_wait_for_a_broker_that_stays_away(settings):
    """After a dropped transaction the predictor retries ``init`` with a growing backoff; a
    stop during that backoff ends it at once rather than after the wait."""
    from streamfit.bus import TransactionAborted

    attempts: list[float] = []

    class BrokerAway:
        def init(self) -> None:
            attempts.append(time.monotonic())
            raise TransactionAborted("the broker is away")

    predictor = Predictor(settings, MemoryBus())
    predictor.running = True
    outcome: list = []
    thread = threading.Thread(
        target=lambda: outcome.append(predictor._start_over(BrokerAway(), lambda: None))
    )
    thread.start()
    wait_until(lambda: len(attempts) >= 2, 10, "a second attempt")  # now in a 2 s backoff
    stopped = time.monotonic()
    predictor.stop()
    thread.join(5)
    assert not thread.is_alive() and outcome == [None]
    assert time.monotonic() - stopped < 0.5 and len(attempts) == 2

"""A message no service can read is dead-lettered and its offset committed: it never stops a
predictor, and no restart or other member of the group reads it again (real broker)."""

from __future__ import annotations

import signal
import time

import orjson

from streamfit import messages
from streamfit.datasets.adult import requests as adult_requests
from tests.fuzz import cases

# What a new user sent: a request whose request_id is not valid UTF-8.
POISON = b'{"request_id": "ab\xed\xa0\x80", "data": {"age": 40}}'


def _collect(
    consumer, predictions: int, dead: int, topics, timeout: float = 60, outcomes: int = 0
) -> tuple[list[dict], list[dict]]:
    """Predictions and dead letters, until that many of each (or ``outcomes`` in all) came."""
    answers: list[dict] = []
    letters: list[dict] = []

    def waiting() -> bool:
        if outcomes:
            return len(answers) + len(letters) < outcomes
        return len(answers) < predictions or len(letters) < dead

    deadline = time.monotonic() + timeout
    while waiting() and time.monotonic() < deadline:
        for message in consumer.poll(100, timeout=0.5):
            record = orjson.loads(message.value)
            (letters if message.topic == topics.dead_letter else answers).append(record)
    return answers, letters


def test_invalid_utf8_request_id_is_dead_lettered_once_and_never_stops_a_predictor(
    deployment,
):
    requests_data = adult_requests(3, seed=1)
    topics = deployment.topics
    bus = deployment.bus()
    listener = bus.consumer([topics.predictions, topics.dead_letter], group=None)
    first = deployment.start("predictor", name="predictor-a")
    deployment.wait_for_log(first, "predictor consuming")
    with bus.producer() as producer:
        producer.produce(topics.requests, messages.request("before", requests_data[0]), b"k")
        producer.produce(topics.requests, POISON, b"k")  # same partition: between the two
        producer.produce(topics.requests, messages.request("after", requests_data[1]), b"k")
    answers, letters = _collect(listener, predictions=2, dead=1, topics=topics)
    assert sorted(a["request_id"] for a in answers) == ["after", "before"]
    assert len(letters) == 1 and letters[0]["error"] == "invalid UTF-8 at byte 18"
    assert letters[0]["payload"] == POISON.decode(errors="replace")
    assert first.poll() is None  # still running

    # A restarted predictor of the group starts after the committed poison: it answers new
    # requests and reads the bad message no more.
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    second = deployment.start("predictor", name="predictor-b")
    deployment.wait_for_log(second, "predictor consuming")
    with bus.producer() as producer:
        producer.produce(topics.requests, messages.request("later", requests_data[2]), b"k")
    answers, letters = _collect(listener, predictions=1, dead=1, topics=topics, timeout=8)
    assert [a["request_id"] for a in answers] == ["later"]
    assert letters == []
    assert second.poll() is None
    listener.close()
    bus.close()


def test_the_nastiest_cases_through_the_real_broker_are_each_answered_or_dead_lettered(
    deployment,
):
    topics = deployment.topics
    bus = deployment.bus()
    listener = bus.consumer([topics.predictions, topics.dead_letter], group=None)
    predictor = deployment.start("predictor")
    deployment.wait_for_log(predictor, "predictor consuming")
    valid = adult_requests(len(cases.CORPUS), seed=2)
    with bus.producer() as producer:
        for i, value in enumerate(cases.CORPUS):
            producer.produce(topics.requests, value, b"k")
            producer.produce(topics.requests, messages.request(f"valid-{i}", valid[i]), b"k")
    total = 2 * len(cases.CORPUS)
    answers, letters = _collect(listener, predictions=total, dead=0, topics=topics, outcomes=total)
    answered = [a["request_id"] for a in answers]
    assert len(answers) + len(letters) == total  # none lost, none twice
    assert all(answered.count(f"valid-{i}") == 1 for i in range(len(cases.CORPUS)))
    assert all(letter["error"] for letter in letters)
    assert not [x for x in letters if x["error"].startswith("unexpected error")]
    assert predictor.poll() is None
    listener.close()
    bus.close()

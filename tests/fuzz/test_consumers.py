"""Property-based fuzzing of every message a service consumes (hypothesis).

Property: the service never raises or stops; every request is answered or dead-lettered with a
reason that names the problem (never the catch-all "unexpected error"); valid messages in the
same batch are answered, each exactly once.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamfit import messages
from streamfit.bus import MemoryBus, Message, Producer
from streamfit.config import Topics
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.features import request_schema
from streamfit.recording import decode_batch
from streamfit.serving import Predictor
from streamfit.training.service import TrainerService
from tests.fuzz import cases

SCHEMA = request_schema(ADULT)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Captured(Producer):
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value))

    def flush(self, timeout: float | None = None) -> None:
        pass

    def records(self, topic: str) -> list[dict]:
        return [orjson.loads(value) for t, value in self.sent if t == topic]


@pytest.fixture
def predictor(settings, store):  # noqa: F811 (the serving fixtures)
    predictor = Predictor(settings.replace(retrain_every=10**9, compile_model=False), MemoryBus())
    assert predictor.swap_to(store.champion())
    return predictor


def _assert_answered_or_dead_lettered(batch: list[Message], producer: Captured) -> None:
    answers = producer.records("predictions")
    dead = producer.records("dead_letter")
    assert len(answers) + len(dead) == len(batch)  # one outcome per message, none lost
    for letter in dead:
        assert letter["error"] and not letter["error"].startswith("unexpected error"), letter
    for answer in answers:
        assert 0.0 <= answer["probability"] <= 1.0


@FUZZ
@given(hostile=st.lists(cases.requests(), min_size=1, max_size=8), data=st.data())
def test_predictor_answers_or_dead_letters_every_request(predictor, hostile, data):
    valid = [data.draw(cases.valid_requests(f"valid-{i}")) for i in range(3)]
    values = [valid[0], *hostile[: len(hostile) // 2], valid[1], *hostile[len(hostile) // 2 :]]
    values.append(valid[2])
    batch = [Message("requests", value, offset=i) for i, value in enumerate(values)]
    producer = Captured()
    predictor.process_isolating(batch, producer)
    _assert_answered_or_dead_lettered(batch, producer)
    answered = [a["request_id"] for a in producer.records("predictions")]
    for i in range(3):
        assert answered.count(f"valid-{i}") == 1


@pytest.mark.parametrize("value", cases.CORPUS, ids=range(len(cases.CORPUS)))
def test_predictor_answers_or_dead_letters_each_corpus_case(predictor, value):
    producer = Captured()
    predictor.process_isolating([Message("requests", value)], producer)
    _assert_answered_or_dead_lettered([Message("requests", value)], producer)
    for letter in producer.records("dead_letter"):
        assert len(letter["payload"]) <= messages.PAYLOAD_LIMIT + 1  # 1 MB is not echoed back


@FUZZ
@given(
    labels=st.lists(cases.labels, max_size=6),
    requests=st.lists(cases.requests(), max_size=6),
    predictions=st.lists(st.binary(max_size=200), max_size=4),
)
def test_recorder_decodes_or_refuses_every_message_with_a_reason(labels, requests, predictions):
    """The recorder's core: every message is decoded or refused (with a reason), none raises."""
    batch = [Message("labels", v) for v in labels] + [Message("requests", v) for v in requests]
    batch += [Message("predictions", v) for v in predictions]
    topics = Topics()
    refused = 0
    for message in batch:  # each message alone: recorded or refused, exactly one of the two
        alone = decode_batch([message], topics, SCHEMA)
        assert bool(alone.batch) != bool(alone.refused), message
        for refusal in alone.refused:
            assert refusal.reason and refusal.payload == message.value
            assert not refusal.reason.startswith("unexpected error")
        refused += len(alone.refused)
    assert len(decode_batch(batch, topics, SCHEMA).refused) == refused  # and the same in one batch


@FUZZ
@given(value=cases.model_events)
def test_model_events_are_read_or_refused_with_a_reason(value):
    try:
        event = messages.parse_model_event(value)
    except messages.InvalidMessage as exc:
        assert str(exc)
    else:
        assert type(event.version) is int and event.version >= 1
        assert all(x is None or (isinstance(x, str) and x) for x in (event.model_uri, event.sha256))


@FUZZ
@given(
    retrains=st.lists(cases.retrain_commands, max_size=4),
    drifts=st.lists(cases.drift_events, max_size=4),
)
def test_trainer_reads_any_command_or_drift_event(tmp_path_factory, retrains, drifts):
    from streamfit.config import Settings

    settings_ = Settings(data_dir=tmp_path_factory.mktemp("trainer"), retrain_on_drift=True)
    trainer = TrainerService(settings_, MemoryBus())
    batch = [Message("retrain", v) for v in retrains] + [Message("drift", v) for v in drifts]
    alarm = any(_is_alarm(value) for value in drifts)
    # A fresh trainer has answered no drift alarm yet: the first one starts a drift round.
    assert trainer._trigger(batch) == ("retrain" if retrains else "drift" if alarm else None)


def _is_alarm(value: bytes) -> bool:
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(event, dict) and event.get("drifted") is True

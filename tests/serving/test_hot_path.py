"""The micro-batch hot path: batch decoding, per-message failures, the observation writer."""

from __future__ import annotations

import orjson
import pytest

from streamfit import messages
from streamfit.bus import MemoryBus, Message, Producer
from streamfit.serving import Predictor
from streamfit.serving._observation_writer import ObservationWriter
from streamfit.stores import ObservationStore


class Captured(Producer):
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, orjson.loads(value)))

    def flush(self, timeout: float = 30.0) -> None:
        pass


@pytest.fixture
def predictor(settings, store):
    predictor = Predictor(settings, MemoryBus())
    assert predictor.swap_to(store.champion())
    yield predictor
    predictor._close_writer()


def test_parse_requests_keeps_good_rows_as_columns_and_words_each_rejection():
    good = messages.request("a", {"age": 30, "workclass": "Private", "fnlwgt": None})
    batch = messages.parse_requests(
        [good, b"{nope", b'{"request_id": "b", "data": {"age": true}}', messages.request("c", {})]
    )
    assert batch.ids == ["a", "c"] and batch.positions == [0, 3]
    assert batch.columns["age"] == (30, None)
    assert batch.columns["workclass"] == ("Private", None)
    assert [(i, e.request_id) for i, e in batch.rejected] == [(1, None), (2, "b")]
    assert "invalid JSON" in str(batch.rejected[0][1])
    assert str(batch.rejected[1][1]) == "column 'age' must be a number, got bool"


def test_batch_encoding_matches_the_single_message_encoding():
    encoded = messages.predictions(["x", "y"], [0.25, 0.75], 3)
    assert encoded == [messages.prediction("x", 0.25, 3), messages.prediction("y", 0.75, 3)]


def test_a_value_numpy_cannot_take_fails_its_message_only(predictor, requests_data):
    huge = b'{"request_id": "huge", "data": {"age": 1' + b"0" * 400 + b"}}"
    batch = [
        Message("requests", messages.request("ok1", requests_data[0])),
        Message("requests", huge),
        Message("requests", messages.request("ok2", requests_data[1])),
    ]
    producer = Captured()
    predictor.process(batch, producer)
    predictor.flush_observations(producer)
    answered = [r["request_id"] for t, r in producer.sent if t == "predictions"]
    dead = [r for t, r in producer.sent if t == "dead_letter"]
    assert answered == ["ok1", "ok2"]
    assert [d["request_id"] for d in dead] == ["huge"]
    expected = predictor._bundle.predict_records(requests_data[:2])
    probabilities = [r["probability"] for t, r in producer.sent if t == "predictions"]
    assert probabilities == pytest.approx(expected.tolist())
    assert predictor.observations.count() == 2


def test_a_label_in_the_same_batch_as_its_request_joins(predictor, requests_data):
    row = {k: v for k, v in requests_data[0].items() if k != "income_bracket"}
    batch = [
        Message("requests", messages.request("r", row)),
        Message("labels", messages.label("r", 1)),
    ]
    producer = Captured()
    predictor.process(batch, producer)
    assert not [r for t, r in producer.sent if t == "dead_letter"]
    assert predictor.observations.labelled_frame()["request_id"].tolist() == ["r"]


def test_writer_stores_everything_pending_on_close(tmp_path, requests_data):
    store = ObservationStore(f"sqlite:///{tmp_path / 'o.db'}")
    writer = ObservationWriter(store, max_pending=1)
    for i in range(20):
        value = messages.request(f"w{i}", requests_data[i])
        writer.submit([(f"w{i}", value, 0.5, 1, 1 if i % 2 else None)])
    writer.close()
    assert store.count() == 20
    assert writer.take_labelled() == 10
    frame = store.labelled_frame()  # the raw request message reads back as its data
    assert frame["age"].tolist() == [float(requests_data[i]["age"]) for i in range(1, 20, 2)]
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit([])


def test_writer_hands_a_failed_write_to_wait(tmp_path):
    class Failing(ObservationStore):
        def add(self, observations):
            raise OSError("disk full")

    writer = ObservationWriter(Failing(f"sqlite:///{tmp_path / 'o.db'}"))
    writer.submit([("x", b"{}", 0.5, 1, None)])
    with pytest.raises(OSError, match="disk full"):
        writer.wait(timeout=10)
    writer.close()


def test_stop_stores_the_last_batch_before_returning(running, requests_data):
    for i in range(25):
        running.send("requests", messages.request(f"s{i}", requests_data[i]))
    running.collect(25)
    running.stop()
    assert running.predictor.observations.count() == 25
    assert running.predictor._writer is None

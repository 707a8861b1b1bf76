"""The micro-batch hot path: batch decoding, per-message failures, nothing stored."""

from __future__ import annotations

import orjson
import pytest

from streamfit import messages
from streamfit.bus import MemoryBus, Message, Producer
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.features import request_schema
from streamfit.ops.instance import SLOTS_DIR
from streamfit.serving import Predictor


class Captured(Producer):
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, orjson.loads(value)))

    def flush(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def predictor(settings, store):
    predictor = Predictor(settings, MemoryBus())
    assert predictor.swap_to(store.champion())
    return predictor


def test_parse_requests_keeps_good_rows_as_columns_and_words_each_rejection():
    good = messages.request("a", {"age": 30, "workclass": "Private", "fnlwgt": None})
    batch = messages.parse_requests(
        [good, b"{nope", b'{"request_id": "b", "data": {"age": true}}', messages.request("c", {})],
        schema=request_schema(ADULT),
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
    answered = [r["request_id"] for t, r in producer.sent if t == "predictions"]
    dead = [r for t, r in producer.sent if t == "dead_letter"]
    assert answered == ["ok1", "ok2"]
    assert [d["request_id"] for d in dead] == ["huge"]
    expected = predictor._bundle.predict_records(requests_data[:2])
    probabilities = [r["probability"] for t, r in producer.sent if t == "predictions"]
    assert probabilities == pytest.approx(expected.tolist())


def test_stop_answers_the_last_batch_and_leaves_nothing_but_the_model_caches(
    running, requests_data, settings
):
    for i in range(25):
        running.send("requests", messages.request(f"s{i}", requests_data[i]))
    answered = {orjson.loads(m.value)["request_id"] for m in running.collect(25)}
    running.stop()
    assert answered == {f"s{i}" for i in range(25)}
    # Stateless: no observation store, no database of any kind in its data directory; only
    # the models it fetched and their compiled copies (caches, rebuilt when deleted), and the
    # empty lock file of its instance slot (its group member id).
    caches = (settings.model_cache, settings.compiled_models, settings.data_dir / SLOTS_DIR)
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    assert files and all(any(c in p.parents for c in caches) for p in files), files

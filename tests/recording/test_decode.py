"""The recorder's pure core: what it accepts from each topic, and why it refuses the rest."""

from __future__ import annotations

import pytest

from streamfit import messages
from streamfit.bus import Message
from streamfit.config import Topics
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.features import request_schema
from streamfit.recording import decode_batch

TOPICS = Topics()
SCHEMA = request_schema(ADULT)


def _one(topic: str, value: bytes):
    decoded = decode_batch([Message(topic, value)], TOPICS, SCHEMA)
    return decoded.batch, decoded.refused


def test_each_topic_decodes_into_its_part_in_arrival_order() -> None:
    batch = [
        Message("labels", messages.label("b", 1)),
        Message("requests", messages.request("a", {"age": 40})),
        Message("predictions", messages.prediction("a", 0.75, 2)),
        Message("labels", b'{"request_id": "a", "income_bracket": "<=50K"}'),
        Message("requests", messages.request("b", {"age": 41})),
    ]
    decoded = decode_batch(batch, TOPICS, SCHEMA)
    assert decoded.refused == []
    assert decoded.batch.requests == [("a", batch[1].value), ("b", batch[4].value)]
    assert decoded.batch.predictions == [("a", 0.75, 2)]
    assert decoded.batch.labels == [("b", 1), ("a", 0)]


def test_a_request_carrying_its_income_bracket_labels_itself() -> None:
    batch, refused = _one("requests", messages.request("d", {"age": 30, "income_bracket": ">50K"}))
    assert refused == [] and batch.labels == [("d", 1)] and len(batch.requests) == 1


@pytest.mark.parametrize(
    ("topic", "value", "reason", "request_id"),
    [
        ("labels", b"{not json", "invalid label: invalid JSON at character 1", None),
        (
            "labels",
            b'{"request_id": "x", "label": "\xff"}',
            "invalid label: invalid UTF-8 at byte 30",
            None,
        ),
        ("labels", b"", "invalid label: invalid JSON: the message is empty", None),
        ("labels", b'{"label": 1}', "missing or non-string 'request_id'", None),
        ("labels", b'{"request_id": 7, "label": 1}', "missing or non-string 'request_id'", None),
        (
            "labels",
            b'{"request_id": "x", "label": 2}',
            "'label' must be '<=50K' or '>50K' (or 1 for '>50K', 0 for the other)",
            "x",
        ),
        ("labels", b"[1, 2]", "a JSON object is needed, got array", None),
        ("predictions", b"\xff\xfe", "invalid prediction: invalid UTF-8 at byte 0", None),
        (
            "predictions",
            b'{"request_id": "p\xff"}',
            "invalid prediction: invalid UTF-8 at byte 17",
            None,
        ),
        ("predictions", b"[]", "invalid prediction: a JSON object is needed, got array", None),
        (
            "predictions",
            b'{"request_id": "p", "probability": "high", "model_version": 1}',
            "invalid prediction: 'probability' must be a number from 0 to 1, got 'high'",
            "p",
        ),
        (
            "predictions",
            b'{"request_id": "p", "probability": 1.5, "model_version": 1}',
            "invalid prediction: 'probability' must be a number from 0 to 1, got 1.5",
            "p",
        ),
        (
            "predictions",
            b'{"request_id": "p", "probability": 0.5, "model_version": true}',
            "invalid prediction: 'model_version' must be an integer >= 0, got boolean",
            "p",
        ),
        (
            "predictions",
            b'{"request_id": "p", "probability": 0.5, "model_version": 1, '
            b'"shadow": {"version": 2}}',
            "invalid prediction: missing 'probability'",
            "p",
        ),
        (
            "predictions",
            b'{"probability": 0.5, "model_version": 1}',
            "invalid prediction: missing 'request_id'",
            None,
        ),
        ("requests", b"{broken", "invalid request: invalid JSON at character 1", None),
        (
            "requests",
            b'{"request_id": "r\xff", "data": {}}',
            "invalid request: invalid UTF-8 at byte 17",
            None,
        ),
        ("requests", b'{"data": {"age": 1}}', "missing or non-string 'request_id'", None),
        ("requests", b'{"request_id": "r", "data": {"age": "old"}}', "'age'", "r"),
        ("other", b"{}", "unexpected topic 'other'", None),
    ],
)
def test_unreadable_messages_are_refused_with_a_reason_naming_the_problem(
    topic: str, value: bytes, reason: str, request_id: str | None
) -> None:
    batch, refused = _one(topic, value)
    assert not batch
    assert len(refused) == 1
    assert reason in refused[0].reason
    assert refused[0].payload == value and refused[0].request_id == request_id


def test_a_bad_message_does_not_spoil_the_rest_of_its_batch() -> None:
    batch = [
        Message("requests", b"garbage"),
        Message("requests", messages.request("ok", {"age": 50})),
        Message("labels", b'{"request_id": "ok"}'),
        Message("labels", messages.label("ok", 0)),
    ]
    decoded = decode_batch(batch, TOPICS, SCHEMA)
    assert [r for r, _ in decoded.batch.requests] == ["ok"]
    assert decoded.batch.labels == [("ok", 0)]
    assert len(decoded.refused) == 2

"""Hostile messages: hypothesis strategies for every topic a service reads, and a fixed corpus
of the nastiest cases (also sent through the real broker by tests/kafka/test_poison.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from streamfit.datasets.adult import CATEGORICAL_COLUMNS, LABEL_COLUMN, NUMERIC_COLUMNS

COLUMNS = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)

# Any JSON value, NaN and infinities included (json.dumps writes them as NaN/Infinity literals),
# with integers far beyond 64 bits.
scalars = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
huge_integers = st.integers(min_value=2**64, max_value=2**200) | st.integers(max_value=-(2**64))
ids = (
    st.text(min_size=1, max_size=20)
    | st.just("")
    | st.just("x" * 10_000)
    | json_values  # wrong types
)
good_values = {
    **{name: st.integers(0, 100) | st.floats(0, 1e6) | st.none() for name in NUMERIC_COLUMNS},
    **{
        name: st.sampled_from(["Private", "Bachelors", "Male", "?"]) for name in CATEGORICAL_COLUMNS
    },
}


@st.composite
def request_data(draw: st.DrawFn) -> dict[str, Any]:
    """Known columns with good or wrong values, some missing, maybe unknown ones."""
    data: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(COLUMNS), unique=True)):
        data[name] = draw(good_values[name] | json_values | huge_integers)
    if draw(st.booleans()):
        data.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)))
    if draw(st.booleans()):
        data[LABEL_COLUMN] = draw(json_values)
    return data


def _text(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A request as bytes: shaped like one with hostile parts, or anything at all."""
    shape = draw(
        st.sampled_from(["request", "bytes", "raw_id", "json", "duplicate_keys", "nested"])
    )
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "raw_id":  # any bytes inside the id's quotes: invalid UTF-8, control characters
        raw = draw(st.binary(min_size=1, max_size=20)).replace(b'"', b"").replace(b"\\", b"")
        return b'{"request_id": "' + raw + b'", "data": {"age": 40}}'
    if shape == "json":
        return _text(draw(json_values))
    if shape == "nested":
        depth = draw(st.integers(1, 3000))
        return b'{"request_id": "deep", "data": ' + b"[" * depth + b"]" * depth + b"}"
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["request_id"] = draw(ids)
    if draw(st.integers(0, 9)):
        message["data"] = draw(request_data() | json_values)
    if shape == "duplicate_keys":
        return _text(message)[:-1] + b', "request_id": ' + _text(draw(ids)) + b"}"
    return _text(message)


@st.composite
def valid_requests(draw: st.DrawFn, request_id: str) -> bytes:
    data = {name: draw(good_values[name]) for name in draw(st.lists(st.sampled_from(COLUMNS)))}
    return _text({"request_id": request_id, "data": data})


def _events(**fields: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    shaped = st.fixed_dictionaries({}, optional=fields).map(_text)
    return shaped | json_values.map(_text) | st.binary(max_size=100)


labels = _events(request_id=ids, label=json_values, income_bracket=json_values)
model_events = _events(version=json_values | huge_integers, event=json_values)
retrain_commands = _events(reason=json_values, labelled=json_values)
drift_events = _events(drifted=json_values, score=json_values)
predictions = _events(
    request_id=ids, probability=json_values, label=json_values, model_version=json_values
)

# The nastiest cases, fixed: each must be dead-lettered with a reason, never stop a service.
CORPUS: list[bytes] = [
    b'{"request_id": "ab\xed\xa0\x80", "data": {"age": 40}}',  # not UTF-8 (the poison pill)
    b"\xff\xfe\x00\x01",
    b"",
    b"null",
    b'"just a string"',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"request_id": "deep", "data": ' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"}",
    # ~1 MB: as large as a Kafka message may be with the clients' default message.max.bytes
    b'{"request_id": "big", "data": {"workclass": "' + b"x" * 990_000 + b'"}}',
    b'{"request_id": "nan", "data": {"age": NaN}}',
    b'{"request_id": "inf", "data": {"hours_per_week": Infinity}}',
    b'{"request_id": "huge", "data": {"age": 1' + b"0" * 400 + b"}}",
    b'{"request_id": "huge-int", "data": {"age": 123456789012345678901234567890}}',
    b'{"request_id": "dup", "request_id": 7, "data": {}}',
    b'{"request_id": "", "data": {}}',
    b'{"request_id": 12, "data": {}}',
    b'{"request_id": "' + b"i" * 10_000 + b'", "data": {"age": "forty"}}',
    b'{"request_id": "unknown", "data": {"shoe_size": 44}}',
    b'{"request_id": "types", "data": {"age": true, "workclass": 3}}',
    b'{"request_id": "lone-surrogate\\ud800", "data": {}}',
    b'{"request_id": "no-data"}',
    b'{"request_id": "list-data", "data": [1, 2, 3]}',
]

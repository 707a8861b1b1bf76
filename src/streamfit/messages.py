"""The JSON messages on streamfit's topics. Plain JSON, so any Kafka client can take part.

requests      {"request_id": str, "data": {column: value}}
predictions   binary {"request_id": str, "probability": float, "label": 0|1, "model_version": int,
               and while a challenger is shadowed "shadow": {"version": int, "probability": float}
               (its answer, recorded beside the champion's, never the one the app acts on)};
              multiclass {"request_id", "probabilities": {class: p}, "label": class,
               "model_version"}; regression {"request_id", "value": float, "model_version"}
               (with "shadow" alike)
dead_letter   {"request_id": str (when known), "error": reason, "payload": raw message, truncated,
               "service": "recorder" (absent: the predictor)}
retrain       {"reason": str, "labelled": int, "threshold": int (recorder), "requested_at": float}
models        {"version": int (registry version), "event": "initial"|"promoted"|"rolled_back"
               (a new champion) | "shadow" (score this challenger beside the champion) |
               "shadow_ended" (stop shadowing it: rejected, kept, promoted or superseded),
               "model_uri": "models:/<registered model>/<version>", "sha256": hex digest of the
               bundle (bundle.bundle_sha256), "reason": str, and optional "metrics", "trigger",
               "by"}
labels        {"request_id": str, "label": a class (binary: or 1/0) or a number; the contract's
               label column's name may stand for "label"}
search        a round's shared study, from its leader for the other trainers to join:
               {"study", "round_id", "budget", "data_rows", "data_hash", "space_hash", "leader",
               "run_id", "dropped", "labelled_upto"} (streamfit.training.study.Announcement)
drift         {"window_end": int|str, "drift": float (domain classifier), "drifted": bool,
               "features": {name: {"score", "p_value" (corrected), "psi", "drifted"}},
               "sequential": {"drifted", "features": [names], "threshold", "evidence": {name: z}},
               "output": {"p_value", "statistic", "drifted", "mean", "reference_mean"},
               "labels": {"n", "positive_rate", "reference_rate", "p_value", "drifted",
               "calibration_error", "calibration_p_value"}}; NaN is written as null, "output"
               and "labels" are null when there is nothing to test.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np
import orjson

from ._native import RowDecoder, encode_rows
from .contract import TaskRules
from .features import FeaturePipeline, RequestSchema, request_schema

PAYLOAD_LIMIT = 2048  # bytes of the offending message kept in a dead-letter record


class InvalidMessage(ValueError):
    """A message that cannot be processed; ``request_id`` is set when it could be read."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.request_id = request_id


def load_json(value: bytes, what: str = "") -> Any:
    """``value`` as JSON; InvalidMessage, worded by streamfit (what and where, never the JSON
    library's text, which changes between releases), when it is not JSON. ``what`` prefixes it."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"{what}{_not_json(value, exc.pos)}") from None


def _not_json(value: bytes, position: int) -> str:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    if not value.strip():
        return "invalid JSON: the message is empty"
    return f"invalid JSON at character {position}"


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons a producer in any language reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def parse_request(value: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a request into (request_id, data); raise InvalidMessage with the reason."""
    message = load_json(value)
    if not isinstance(message, dict):
        raise InvalidMessage(f"a request must be a JSON object, got {json_type(message)}")
    request_id = message.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidMessage("missing or non-string 'request_id'")
    if "data" not in message:
        raise InvalidMessage("missing 'data'", request_id)
    return request_id, message["data"]


class _Shadow(msgspec.Struct, gc=False):
    version: int
    probability: float


class _Prediction(msgspec.Struct, gc=False, omit_defaults=True):
    request_id: str
    probability: float
    label: int
    model_version: int
    shadow: _Shadow | None = None


_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class RequestBatch:
    """A micro-batch of requests, decoded and validated, ready for a model's pipeline."""

    positions: list[int] = field(default_factory=list)  # index in the input of each valid one
    ids: list[str] = field(default_factory=list)
    # the schema's columns -> values; empty when the batch was decoded natively
    columns: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    rejected: list[tuple[int, InvalidMessage]] = field(default_factory=list)  # (index, reason)
    # Decoded natively: the messages, and the matrix of the pipeline they were decoded for.
    values: Sequence[bytes] = ()
    native: tuple[FeaturePipeline, np.ndarray] | None = None

    def features(self, pipeline: FeaturePipeline) -> np.ndarray:
        """The batch as ``pipeline``'s model input."""
        if self.native is None:
            return pipeline.transform(self.columns)
        decoded_for, matrix = self.native
        if decoded_for is pipeline:
            return matrix
        # Another model's pipeline (a shadowed challenger's): decoded again with its categories,
        # natively when its contract allows, else by msgspec with its schema.
        again = _decode_natively(self.values, pipeline)
        if again is not None:
            return again[1]
        return pipeline.transform(parse_requests(self.values, schema=_schema(pipeline)).columns)


def parse_requests(
    values: Sequence[bytes],
    pipeline: FeaturePipeline | None = None,
    columns: Sequence[str] | None = None,
    schema: RequestSchema | None = None,
) -> RequestBatch:
    """Decode and validate a batch in one pass; a bad message is rejected alone, with its reason.

    Given the model's ``pipeline``, the native decoder first tries the whole batch, from the
    bytes straight into the model's matrix (``_native.c``); it takes the common shape
    of a valid request, and leaves anything else, and so every batch with an invalid message in
    it, to msgspec: msgspec checks each message against the ``schema`` (the pipeline's contract's
    by default) while decoding it; a message it refuses goes through :func:`parse_request` and
    the schema's ``problem`` once more, only to word the reason. msgspec decodes the whole
    batch by one ``map`` first (the loop runs in C: no Python frame per message); only a batch
    with a bad message in it is decoded again message by message, to keep the good ones and
    word each rejection.

    Decoded by msgspec, the batch's ``columns`` are the ones named (the schema's by default; the
    recorder takes the label only).
    """
    if schema is None:
        if pipeline is None:
            raise ValueError("parse_requests needs a pipeline or a schema")
        schema = _schema(pipeline)
    if columns is None:
        columns = schema.columns
    if pipeline is not None:
        decoded = _decode_natively(values, pipeline)
        if decoded is not None:
            ids, matrix = decoded
            return RequestBatch(
                list(range(len(ids))), ids, values=values, native=(pipeline, matrix)
            )
    try:
        requests = list(map(schema.decode, values))
    # msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8.
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError included
        return _parse_one_by_one(values, columns, schema)
    batch = RequestBatch(list(range(len(requests))), [r.request_id for r in requests])
    batch.columns = schema.as_columns([r.data for r in requests], columns)
    return batch


def _parse_one_by_one(
    values: Sequence[bytes], columns: Sequence[str], schema: RequestSchema
) -> RequestBatch:
    batch = RequestBatch()
    records = []
    for position, value in enumerate(values):
        try:
            request = schema.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            batch.rejected.append((position, _explain(value, schema)))
            continue
        batch.positions.append(position)
        batch.ids.append(request.request_id)
        records.append(request.data)
    batch.columns = schema.as_columns(records, columns)
    return batch


def _decode_natively(
    values: Sequence[bytes], pipeline: FeaturePipeline
) -> tuple[list[str], np.ndarray] | None:
    """The batch's ids and ``pipeline``'s matrix, or None when a message needs msgspec."""
    decoder = _row_decoder(pipeline)
    if decoder is None:
        return None
    raw = np.empty((len(values), pipeline.raw_width))
    ids = decoder.decode(values, raw)
    return None if ids is None else (ids, pipeline.transform_raw(raw))


@functools.lru_cache(maxsize=8)  # the champion's, a challenger's, the ones just replaced
def _row_decoder(pipeline: FeaturePipeline) -> RowDecoder | None:
    return pipeline.row_decoder("request_id", "data")


def _schema(pipeline: FeaturePipeline) -> RequestSchema:
    return request_schema(pipeline.contract)


def _explain(value: bytes, schema: RequestSchema) -> InvalidMessage:
    try:
        request_id, data = parse_request(value)
    except InvalidMessage as exc:
        return exc
    # Should the two checks ever disagree, the reason still says which part is wrong.
    return InvalidMessage(schema.problem(data) or "'data' does not match the schema", request_id)


class _ShadowIn(msgspec.Struct, gc=False):
    version: Annotated[int, msgspec.Meta(ge=0)]
    probability: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class _PredictionIn(msgspec.Struct, gc=False):
    request_id: Annotated[str, msgspec.Meta(min_length=1)]
    probability: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    model_version: Annotated[int, msgspec.Meta(ge=0)]
    shadow: _ShadowIn | None = None


_decode_prediction = msgspec.json.Decoder(_PredictionIn).decode


class Prediction(NamedTuple):
    """A prediction as the recorder reads it; ``shadow_*`` are set while a challenger is
    shadowed (its version and its probability for the same request). A named tuple: one is
    built per message, about 3x faster than a frozen dataclass."""

    request_id: str
    probability: float
    model_version: int
    shadow_version: int | None = None
    shadow_probability: float | None = None


def parse_prediction(value: bytes, rules: TaskRules | None = None) -> Prediction:
    """Decode a prediction; raise InvalidMessage naming what is wrong (the recorder
    dead-letters it). A multiclass or regression model's (``rules``) is read as the class's
    index or the value, in ``probability``'s place."""
    if rules is not None and rules.name != "binary":
        return _parse_task_prediction(value, rules)
    try:
        prediction = _decode_prediction(value)
    # Older msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8.
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidMessage(_prediction_problem(value), request_id_of(value)) from None
    shadow = prediction.shadow
    return Prediction(
        prediction.request_id,
        prediction.probability,
        prediction.model_version,
        shadow.version if shadow else None,
        shadow.probability if shadow else None,
    )


def _parse_task_prediction(value: bytes, rules: TaskRules) -> Prediction:
    record = load_json(value, "invalid prediction: ")
    if not isinstance(record, dict):
        problem = f"a JSON object is needed, got {json_type(record)}"
        raise InvalidMessage(f"invalid prediction: {problem}")
    shadow = record.get("shadow")
    problem = (
        _field_problem(record, "request_id", _NON_EMPTY_STRING)
        or _field_problem(record, "model_version", _VERSION)
        or _output_problem(record, rules)
        or (shadow is not None and not isinstance(shadow, dict) and "'shadow' must be an object")
        or (
            shadow is not None
            and (_field_problem(shadow, "version", _VERSION) or _output_problem(shadow, rules))
        )
    )
    if problem:
        raise InvalidMessage(f"invalid prediction: {problem}", request_id_of(value))
    return Prediction(
        record["request_id"],
        _output(record, rules),
        record["model_version"],
        shadow["version"] if shadow else None,
        _output(shadow, rules) if shadow else None,
    )


def _output(record: dict[str, Any], rules: TaskRules) -> float:
    if rules.name == "regression":
        return float(record["value"])
    return float(rules.encode_label(record["label"]))  # type: ignore[arg-type]


def _output_problem(record: dict[str, Any], rules: TaskRules) -> str | None:
    if rules.name == "regression":
        return _field_problem(record, "value", _NUMBER)
    if "label" not in record:
        return "missing 'label'"
    if rules.encode_label(record["label"]) is None:
        return f"'label' must be {rules.describe_label()}, got {record['label']!r}"[:120]
    return None


def _prediction_problem(value: bytes) -> str:
    """Why msgspec refused a prediction, in streamfit's words (it runs on that path only)."""
    try:
        record = load_json(value)
    except InvalidMessage as exc:
        return f"invalid prediction: {exc}"
    if not isinstance(record, dict):
        return f"invalid prediction: a JSON object is needed, got {json_type(record)}"
    shadow = record.get("shadow", None)
    problem = (
        _field_problem(record, "request_id", _NON_EMPTY_STRING)
        or _field_problem(record, "probability", _PROBABILITY)
        or _field_problem(record, "model_version", _VERSION)
        or (shadow is not None and not isinstance(shadow, dict) and "'shadow' must be an object")
        or (
            shadow is not None
            and (
                _field_problem(shadow, "version", _VERSION)
                or _field_problem(shadow, "probability", _PROBABILITY)
            )
        )
        or "it does not match the prediction schema"
    )
    return f"invalid prediction: {problem}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# (what a field must be, in words; the check)
_NON_EMPTY_STRING = ("a non-empty string", lambda value: isinstance(value, str) and value != "")
_PROBABILITY = ("a number from 0 to 1", lambda value: _is_number(value) and 0 <= value <= 1)
_VERSION = ("an integer >= 0", lambda value: type(value) is int and value >= 0)
_NUMBER = ("a finite number", lambda value: _is_number(value) and math.isfinite(value))


def _field_problem(
    record: dict[str, Any], name: str, rule: tuple[str, Callable[[Any], bool]]
) -> str | None:
    """What is wrong with ``record[name]`` under ``rule``, or None."""
    if name not in record:
        return f"missing {name!r}"
    value = record[name]
    expected, valid = rule
    if valid(value):
        return None
    got = repr(value)[:40] if isinstance(value, str) or _is_number(value) else json_type(value)
    return f"{name!r} must be {expected}, got {got}"


def parse_label(value: bytes, rules: TaskRules) -> tuple[str, float]:
    """Decode a label into (request_id, encoded label) by the contract's ``rules``: ``label``
    or the contract's label column, a class (binary: or 1/0) or a number; raise InvalidMessage
    naming what is wrong."""
    record = load_json(value, "invalid label: ")
    if not isinstance(record, dict):
        raise InvalidMessage(f"invalid label: a JSON object is needed, got {json_type(record)}")
    request_id = record.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidMessage("invalid label: missing or non-string 'request_id'")
    raw = record.get("label", record.get(rules.contract.label))
    label = rules.encode_label(raw)
    if label is None:
        raise InvalidMessage(
            f"invalid label: 'label' must be {rules.describe_label()}, got {raw!r}", request_id
        )
    return request_id, label


def request_id_of(value: bytes) -> str | None:
    """The ``request_id`` of a message, if it can be read at all (for a dead letter's key)."""
    try:
        request_id = orjson.loads(value).get("request_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return request_id if isinstance(request_id, str) and request_id else None


def predictions(
    ids: Sequence[str],
    probabilities: Sequence[float] | np.ndarray,
    version: int,
    shadow: tuple[int, Sequence[float]] | None = None,
    rules: TaskRules | None = None,
) -> list[bytes]:
    """Encode a batch of predictions (same JSON as :func:`prediction`); ``shadow``: the
    shadowed challenger's version and its probabilities for the same rows. ``rules``: the
    task's, for a multiclass or regression model (``probabilities`` are then its outputs).

    Without a shadow, msgspec writes all the batch's numbers as one JSON list and the native
    encoder (``_native.c``) copies each into its message between the task's keys: a fraction of
    the cost of building and encoding an object a message (figures: the predictor's benchmark
    page). Ids that JSON must escape are written by :func:`_encode_rows` instead, byte for byte
    the same."""
    if not ids:
        return []
    if shadow is not None:
        if rules is not None and rules.name != "binary":
            return _task_shadowed(ids, probabilities, version, rules, shadow)
        return _binary_shadowed(ids, probabilities, version, shadow)
    outputs = np.asarray(probabilities, dtype=np.float64)
    keys, tails = _layout(outputs, version, rules)
    numbers = outputs.ravel().tolist()
    encoded = encode_rows(ids, _encode(numbers), keys, tails)
    return _encode_rows(ids, numbers, keys, tails) if encoded is None else encoded


def _layout(
    outputs: np.ndarray, version: int, rules: TaskRules | None
) -> tuple[tuple[bytes, ...], list[bytes]]:
    """The task's prediction as :func:`encode_rows` writes it: the key before each of a
    row's numbers, and each row's tail (what follows its numbers, up to the closing brace)."""
    end = b',"model_version":%d}' % version
    task = "binary" if rules is None else rules.name
    if task == "binary":
        ends = (b',"label":0' + end, b',"label":1' + end)
        return (b',"probability":',), [ends[chosen] for chosen in (outputs >= 0.5).tolist()]
    if task == "multiclass":
        classes = rules.contract.classes  # type: ignore[union-attr]
        names = [_encode(str(name)) + b":" for name in classes]
        keys = (b',"probabilities":{' + names[0], *(b"," + name for name in names[1:]))
        ends = [b'},"label":' + _encode(name) + end for name in classes]
        return keys, [ends[best] for best in outputs.argmax(axis=1).tolist()]
    return (b',"value":',), [end] * len(outputs)


def _encode_rows(
    ids: Sequence[str], numbers: list[float], keys: Sequence[bytes], tails: Sequence[bytes]
) -> list[bytes]:
    """:func:`encode_rows` in Python, for ids that JSON must escape."""
    width = len(keys)
    return [
        b"".join(
            (
                b'{"request_id":',
                _encode(request_id),
                *(key + _encode(n) for key, n in zip(keys, numbers[at : at + width], strict=True)),
                tail,
            )
        )
        for at, request_id, tail in zip(range(0, len(numbers), width), ids, tails, strict=True)
    ]


def _binary_shadowed(
    ids: Sequence[str],
    probabilities: Sequence[float] | np.ndarray,
    version: int,
    shadow: tuple[int, Sequence[float]],
) -> list[bytes]:
    """Binary predictions with the shadowed challenger's answer beside."""
    shadow_version, shadow_probabilities = shadow
    return [
        _encode(
            _Prediction(
                request_id,
                probability,
                int(probability >= 0.5),
                version,
                _Shadow(shadow_version, theirs),
            )
        )
        for request_id, probability, theirs in zip(
            ids, probabilities, shadow_probabilities, strict=True
        )
    ]


def _task_shadowed(
    ids: Sequence[str],
    outputs: Sequence[Any],
    version: int,
    rules: TaskRules,
    shadow: tuple[int, Sequence[Any]],
) -> list[bytes]:
    """Multiclass or regression predictions with the shadowed challenger's answer beside."""
    fields = rules.predictions(outputs)
    shadow_version, shadow_outputs = shadow
    return [
        orjson.dumps(
            {
                "request_id": request_id,
                **row,
                "model_version": version,
                "shadow": {"version": shadow_version, **theirs},
            }
        )
        for request_id, row, theirs in zip(
            ids, fields, rules.predictions(shadow_outputs), strict=True
        )
    ]


def request(request_id: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"request_id": request_id, "data": data})


def prediction(request_id: str, probability: float, model_version: int) -> bytes:
    return orjson.dumps(
        {
            "request_id": request_id,
            "probability": probability,
            "label": int(probability >= 0.5),
            "model_version": model_version,
        }
    )


def dead_letter(
    error: str, payload: bytes, request_id: str | None = None, service: str | None = None
) -> bytes:
    """``service`` names who refused the message when it is not the predictor (``recorder``)."""
    record: dict[str, Any] = {"error": error, "payload": _truncate(payload)}
    if request_id is not None:
        record = {"request_id": request_id, **record}
    if service is not None:
        record["service"] = service
    return orjson.dumps(record)


def retrain(reason: str, labelled: int, threshold: int | None = None) -> bytes:
    """A retrain command; ``threshold``: the multiple of ``retrain_every`` labelled observations
    it was published for (the recorder publishes each threshold once)."""
    record: dict[str, Any] = {"reason": reason, "labelled": labelled}
    if threshold is not None:
        record["threshold"] = threshold
    return orjson.dumps({**record, "requested_at": time.time()})


def model_ready(version: int, event: str, **details: Any) -> bytes:
    return orjson.dumps({"version": version, "event": event, **details}, default=str)


CHAMPION_EVENTS = ("initial", "promoted", "rolled_back")
SHADOW_EVENTS = ("shadow", "shadow_ended")


@dataclass(frozen=True, slots=True)
class ModelEvent:
    """What a predictor reads of a ``models`` event: the registry version, its model URI and the
    bundle's SHA-256 (both None in events from before the registry carried the bundle), and what
    happens to it: a new champion (``promoted``...) or the start or end of its shadowing."""

    version: int
    model_uri: str | None = None
    sha256: str | None = None
    event: str = "promoted"

    @property
    def is_shadow(self) -> bool:
        return self.event in SHADOW_EVENTS


def parse_model_event(value: bytes) -> ModelEvent:
    """Read a ``models`` event; InvalidMessage says what is wrong."""
    event = load_json(value)
    version = event.get("version") if isinstance(event, dict) else None
    if type(version) is not int or version < 1:  # bool is an int: refused too
        raise InvalidMessage(f"a model event needs an integer 'version' >= 1, got {version!r}")
    fields = {name: event.get(name) for name in ("model_uri", "sha256")}
    for name, text in fields.items():
        if text is not None and (not isinstance(text, str) or not text):
            raise InvalidMessage(f"a model event's {name!r} must be a non-empty string")
    kind = event.get("event", "promoted")
    if kind not in CHAMPION_EVENTS + SHADOW_EVENTS:
        raise InvalidMessage(f"unknown model event {kind!r}")
    return ModelEvent(version, **fields, event=kind)


DRIFT_EVENT_KEYS = ("window_end", "drift", "drifted", "features", "sequential", "output", "labels")


def drift_event(
    *,
    window_end: int | str | None,
    drift: float | None,
    drifted: bool,
    features: dict[str, dict[str, Any]],
    sequential: dict[str, Any],
    output: dict[str, Any] | None = None,
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload of a ``drift`` event (see the module docstring), as a dict of JSON types."""
    return {
        "window_end": window_end,
        "drift": drift,
        "drifted": drifted,
        "features": features,
        "sequential": sequential,
        "output": output,
        "labels": labels,
    }


def decode(value: bytes) -> Any:
    return orjson.loads(value)


def _truncate(payload: bytes) -> str:
    text = payload[:PAYLOAD_LIMIT].decode("utf-8", errors="replace")
    return text + ("…" if len(payload) > PAYLOAD_LIMIT else "")


def label(request_id: str, value: Any) -> bytes:
    return orjson.dumps({"request_id": request_id, "label": value})

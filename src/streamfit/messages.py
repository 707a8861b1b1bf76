"""The JSON messages on streamfit's topics. Plain JSON, so any Kafka client can take part.

requests      {"request_id": str, "data": {column: value}}
predictions   {"request_id": str, "probability": float, "label": 0|1, "model_version": int}
dead_letter   {"request_id": str (when known), "error": reason, "payload": raw message, truncated}
retrain       {"reason": str, "labelled": int, "requested_at": float}
models        {"version": int, "event": "promoted"|"rollback"|..., "metrics": {...}}
labels        {"request_id": str, "label": 0|1 or an income_bracket string}
"""

from __future__ import annotations

import time
from typing import Any

import orjson

PAYLOAD_LIMIT = 2048  # bytes of the offending message kept in a dead-letter record


class InvalidMessage(ValueError):
    """A message that cannot be processed; ``request_id`` is set when it could be read."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.request_id = request_id


def parse_request(value: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a request into (request_id, data); raise InvalidMessage with the reason."""
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"invalid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise InvalidMessage(f"a request must be a JSON object, got {type(message).__name__}")
    request_id = message.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidMessage("missing or non-string 'request_id'")
    if "data" not in message:
        raise InvalidMessage("missing 'data'", request_id)
    return request_id, message["data"]


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


def dead_letter(error: str, payload: bytes, request_id: str | None = None) -> bytes:
    record: dict[str, Any] = {"error": error, "payload": _truncate(payload)}
    if request_id is not None:
        record = {"request_id": request_id, **record}
    return orjson.dumps(record)


def retrain(reason: str, labelled: int) -> bytes:
    return orjson.dumps({"reason": reason, "labelled": labelled, "requested_at": time.time()})


def model_ready(version: int, event: str, **details: Any) -> bytes:
    return orjson.dumps({"version": version, "event": event, **details}, default=str)


def decode(value: bytes) -> Any:
    return orjson.loads(value)


def _truncate(payload: bytes) -> str:
    text = payload[:PAYLOAD_LIMIT].decode("utf-8", errors="replace")
    return text + ("…" if len(payload) > PAYLOAD_LIMIT else "")


def label(request_id: str, value: int) -> bytes:
    return orjson.dumps({"request_id": request_id, "label": value})

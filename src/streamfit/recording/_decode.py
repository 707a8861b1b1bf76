"""The recorder's pure core: a polled batch of messages in, what to upsert and what to refuse out.

No bus and no database here, so every rule of what the recorder accepts is testable alone:

* ``requests``: the contract's schema (one msgspec pass for the batch); the raw message is the
  observation's data. A request that carries the contract's label (demo mode) also labels
  itself.
* ``predictions``: ``request_id``, the task's prediction (binary a probability in [0, 1],
  multiclass a class, regression a value) and a model version >= 0, and the shadowed
  challenger's version and prediction when there is one.
* ``labels``: ``request_id`` and ``label`` (or the contract's label column): a class (binary:
  or 1/0) or a number.

Anything it cannot read (invalid JSON or UTF-8, wrong types, no ``request_id``) becomes a
:class:`Refused` with the reason, and never stops the rest of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import messages
from ..bus import Message
from ..config import Topics
from ..features import RequestSchema
from ..stores import ObservationBatch


@dataclass(frozen=True, slots=True)
class Refused:
    """A message the recorder cannot record, and why."""

    reason: str
    payload: bytes
    request_id: str | None = None


@dataclass
class Decoded:
    batch: ObservationBatch = field(default_factory=ObservationBatch)
    refused: list[Refused] = field(default_factory=list)


def decode_batch(batch: list[Message], topics: Topics, schema: RequestSchema) -> Decoded:
    """Split ``batch`` by topic and decode each message by ``schema``'s contract; keep arrival
    order within a topic."""
    out = Decoded()
    rules = schema.rules
    requests = [m for m in batch if m.topic == topics.requests]
    if requests:
        _requests(requests, out, schema)
    for message in batch:
        try:
            if message.topic == topics.predictions:
                request_id, probability, version, shadow_version, shadow_probability = (
                    messages.parse_prediction(message.value, rules)
                )
                out.batch.predictions.append((request_id, probability, version))
                if shadow_version is not None:
                    out.batch.shadows.append((request_id, shadow_version, shadow_probability))
            elif message.topic == topics.labels:
                out.batch.labels.append(messages.parse_label(message.value, rules))
            elif message.topic != topics.requests:
                out.refused.append(Refused(f"unexpected topic {message.topic!r}", message.value))
        except messages.InvalidMessage as exc:
            out.refused.append(Refused(str(exc), message.value, exc.request_id))
    return out


def _requests(requests: list[Message], out: Decoded, schema: RequestSchema) -> None:
    label_column = schema.contract.label
    rules = schema.rules
    parsed = messages.parse_requests(
        [m.value for m in requests], columns=(label_column,), schema=schema
    )
    for position, error in parsed.rejected:
        out.refused.append(
            Refused(f"invalid request: {error}", requests[position].value, error.request_id)
        )
    labels = parsed.columns[label_column]
    for request_id, position, raw in zip(parsed.ids, parsed.positions, labels, strict=True):
        out.batch.requests.append((request_id, requests[position].value))
        label = None if raw is None else rules.encode_label(raw)
        if label is not None:
            out.batch.labels.append((request_id, label))

"""Handling a consumed batch so that no single message can stop a service.

A service handles what it polled as one batch (fast). Should that raise anything unexpected, one
message of the batch is usually to blame; failing the whole batch would leave its offsets
uncommitted, so every restart, and every other consumer of the group, would read the same
message again and fail again (a *poison pill*). Instead the batch is handled once more message by
message and only the messages that still raise are dead-lettered, with the exception's text.
Their offsets are then committed with the rest of the batch, as for any other dead letter.

>>> from streamfit.bus import Message
>>> from streamfit.bus import MemoryBus
>>> def handle(batch, producer):
...     for message in batch:
...         producer.produce("doubled", str(2 * int(message.value)).encode())
>>> bus, dead = MemoryBus(), []
>>> out = bus.consumer(["doubled"], group=None)
>>> batch = [Message("t", b"1"), Message("t", b"x"), Message("t", b"3")]
>>> with bus.producer() as producer:
...     handle_isolating(batch, handle, producer, lambda m, why: dead.append((m.value, why)))
1
>>> [m.value for m in out.poll(10, timeout=1)]
[b'2', b'6']
>>> dead
[(b'x', "unexpected error: ValueError: invalid literal for int() with base 10: b'x'")]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..bus import Message, Producer

log = logging.getLogger("streamfit.ops.batches")


class _Held(Producer):
    """Holds what a handler produces until the handler has returned: a failed attempt sends
    nothing, so retrying it message by message answers no request twice."""

    def __init__(self) -> None:
        # (topic, values, keys): a batch from produce_many, or one message from produce.
        self.messages: list[tuple[str, Sequence[bytes], Sequence[bytes | None]]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.messages.append((topic, (value,), (key,)))

    def produce_many(
        self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None]
    ) -> None:
        if len(values) != len(keys):
            raise ValueError(f"{len(values)} values but {len(keys)} keys")
        self.messages.append((topic, values, keys))

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to wait for: :meth:`send_to` hands the messages on."""

    def send_to(self, producer: Producer) -> None:
        for topic, values, keys in self.messages:
            if len(values) == 1:
                producer.produce(topic, values[0], keys[0])
            else:
                producer.produce_many(topic, values, keys)


def handle_isolating(
    batch: Sequence[Message],
    handle: Callable[[list[Message], Producer], object],
    producer: Producer,
    dead_letter: Callable[[Message, str], object],
    reraise: tuple[type[Exception], ...] = (),
) -> int:
    """``handle(batch, producer)``; if it raises, ``handle`` each message alone and dead-letter
    those that raise. Return how many messages were dead-lettered that way.

    ``reraise``: exceptions no message is to blame for (a database that cannot be reached),
    raised to the caller instead, from the batch or from any single message.

    What a handler produces reaches ``producer`` only if the handler returns, so a failed
    attempt leaves no trace on the topics (side effects elsewhere must be idempotent: they are
    repeated). Exceptions raised by ``dead_letter`` itself (the transport failing) propagate.
    """
    held = _Held()
    try:
        handle(list(batch), held)
    except reraise:
        raise
    except Exception as exc:  # an unexpected error: find the message behind it
        log.exception(
            "handling a batch of %d message(s) raised %s; retrying them one by one",
            len(batch),
            type(exc).__name__,
        )
    else:
        held.send_to(producer)
        return 0
    failed = 0
    for message in batch:
        held = _Held()
        try:
            handle([message], held)
        except reraise:
            raise
        except Exception as exc:
            failed += 1
            dead_letter(message, f"unexpected error: {type(exc).__name__}: {exc}")
        else:
            held.send_to(producer)
    return failed

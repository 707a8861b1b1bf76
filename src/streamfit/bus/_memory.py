"""In-process bus: the zero-setup default, for `streamfit demo` and for tests.

One log per topic (a single partition), a shared cursor per consumer group, and a private cursor
per broadcast consumer. Everything is guarded by one condition variable; ``poll`` waits on it.
Messages already consumed by every group are dropped so a long run does not grow without bound.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from ._base import Bus, BusFenced, Consumer, Message, Producer, TransactionalProducer


@dataclass
class _Log:
    messages: list[Message] = field(default_factory=list)
    base: int = 0  # offset of messages[0]; earlier ones were trimmed

    @property
    def end(self) -> int:
        return self.base + len(self.messages)


@dataclass
class _Cursor:
    position: int
    committed: int


class MemoryBus(Bus):
    def __init__(self) -> None:
        self.url = "memory://"
        self._cond = threading.Condition()
        self._logs: dict[str, _Log] = defaultdict(_Log)
        # (topic, group) -> cursor; broadcast consumers own an anonymous cursor.
        self._cursors: dict[tuple[str, object], _Cursor] = {}
        # transactional id -> the epoch of its newest producer (older ones are fenced)
        self._epochs: dict[str, int] = {}

    def producer(self) -> Producer:
        return _MemoryProducer(self)

    def transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        with self._cond:
            epoch = self._epochs[transactional_id] = self._epochs.get(transactional_id, 0) + 1
        return _MemoryTransactionalProducer(self, transactional_id, epoch)

    def consumer(
        self,
        topics: list[str],
        group: str | None,
        *,
        read_committed: bool = True,
        replay: int = 0,
        max_poll_interval_s: float | None = None,
        instance_id: str | None = None,
    ) -> Consumer:
        # Transactions are published only when they commit: every consumer is read_committed.
        # No member of an in-process group is ever evicted, nor outlives its process:
        # max_poll_interval_s and instance_id have no use.
        return _MemoryConsumer(self, topics, group, replay)

    # -- internals used by the clients --------------------------------------------------------
    def _append(self, batch: list[Message]) -> None:
        now = time.time()
        with self._cond:
            for message in batch:
                log = self._logs[message.topic]
                log.messages.append(
                    Message(message.topic, message.value, message.key, 0, log.end, now)
                )
            self._cond.notify_all()

    def _cursor(self, topic: str, owner: object, from_end: bool, replay: int = 0) -> _Cursor:
        key = (topic, owner)
        if key not in self._cursors:
            log = self._logs[topic]
            start = max(log.base, log.end - replay) if from_end else log.base
            self._cursors[key] = _Cursor(start, start)
        return self._cursors[key]

    def _trim(self, topic: str) -> None:
        floor = min((c.committed for (t, _), c in self._cursors.items() if t == topic), default=0)
        log = self._logs[topic]
        drop = floor - log.base
        if drop > 1024:  # trim in chunks: list slicing is O(n)
            del log.messages[:drop]
            log.base = floor


class _MemoryProducer(Producer):
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._bus._append([Message(topic, value, key)])

    def flush(self, timeout: float | None = None) -> None:
        """Appends are acknowledged at once in memory."""


class _MemoryTransactionalProducer(TransactionalProducer):
    """Buffers a transaction's messages and publishes them together with the offsets commit."""

    def __init__(self, bus: MemoryBus, transactional_id: str, epoch: int) -> None:
        self._bus = bus
        self._transactional_id = transactional_id
        self._epoch = epoch
        self._pending: list[Message] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._pending.append(Message(topic, value, key))

    def flush(self, timeout: float | None = None) -> None:
        pass

    def begin(self) -> None:
        self._pending = []

    def commit_with(self, consumer: Consumer) -> None:
        with self._bus._cond:
            if self._bus._epochs[self._transactional_id] != self._epoch:
                self._pending = []  # aborted, as the broker aborts a fenced transaction
                raise BusFenced(
                    f"transactional id {self._transactional_id!r} was taken over by a newer "
                    "producer (commit)"
                )
            self._bus._append(self._pending)
            consumer.commit()
        self._pending = []

    def abort(self) -> None:
        self._pending = []


class _MemoryConsumer(Consumer):
    def __init__(
        self, bus: MemoryBus, topics: list[str], group: str | None, replay: int = 0
    ) -> None:
        self._bus = bus
        self._topics = list(topics)
        owner: object = group if group is not None else object()
        with bus._cond:
            # A new group starts at the beginning, like auto.offset.reset=earliest; a broadcast
            # consumer only sees what is published after it subscribed (and ``replay`` before).
            self._cursors = {
                t: bus._cursor(t, owner, from_end=group is None, replay=replay) for t in topics
            }
        self._delivered: dict[str, int] = {}
        self._closed = False

    def poll(self, max_messages: int = 1, timeout: float = 1.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        bus = self._bus
        with bus._cond:
            while True:
                batch: list[Message] = []
                for topic in self._topics:
                    log, cursor = bus._logs[topic], self._cursors[topic]
                    take = min(max_messages - len(batch), log.end - cursor.position)
                    if take > 0:
                        start = cursor.position - log.base
                        batch.extend(log.messages[start : start + take])
                        cursor.position += take
                        self._delivered[topic] = cursor.position
                if batch:
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return []
                bus._cond.wait(remaining)

    def commit(self) -> None:
        with self._bus._cond:
            for topic, position in self._delivered.items():
                cursor = self._cursors[topic]
                cursor.committed = max(cursor.committed, position)
                self._bus._trim(topic)
            self._delivered.clear()

    def lag(self) -> dict[tuple[str, int], int]:
        with self._bus._cond:
            return {
                (topic, 0): self._bus._logs[topic].end - cursor.position
                for topic, cursor in self._cursors.items()
            }

    def close(self) -> None:
        with self._bus._cond:
            self._closed = True
            # Uncommitted messages go back to the group, as on a Kafka rebalance.
            for topic in self._delivered:
                cursor = self._cursors[topic]
                cursor.position = min(cursor.position, cursor.committed)
            self._bus._cond.notify_all()

"""The transport interface every bus implements: topics of JSON bytes, consumer groups, acks.

Semantics (identical for every implementation, checked by tests/bus/test_contract.py):

* ``producer().produce(topic, value, key)`` queues a message; ``flush()`` returns once every
  queued message is acknowledged and raises :class:`DeliveryError` if any was not.
* ``consumer(topics, group=...)``: consumers sharing a ``group`` share the messages (each message
  goes to one of them); a consumer with ``group=None`` is a *broadcast* consumer that sees every
  message published after it was created (model-ready events reach every predictor this way).
* ``poll(max_messages, timeout)`` returns up to ``max_messages`` messages that are waiting, waiting
  at most ``timeout`` seconds for the first one (adaptive micro-batching builds on this).
* ``commit()`` marks every message returned by ``poll`` so far as done for the group. A consumer
  that closes or dies without committing has its uncommitted messages delivered again.
* Consumers are ``read_committed`` by default: messages of a transaction become visible when it
  commits and never if it aborts. ``read_committed=False`` lets Kafka return them before that
  (the memory bus publishes a transaction only on commit, so it is the same either way).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import NamedTuple, Self


class BusError(Exception):
    """Root of every transport error streamfit raises."""


class DeliveryError(BusError):
    """A produced message was not acknowledged by the transport."""


class TransactionAborted(DeliveryError):
    """A transaction failed midway (a broker restart, a coordinator that moved, a call that
    never returned) and was dropped: nothing of it shows to read_committed readers, unless the
    broker had already taken its commit. Either way its input is consumed again, by a consumer
    opened anew at the committed offsets once :meth:`TransactionalProducer.init` has returned
    (the broker has then finished or aborted the dropped transaction)."""


class BusUnavailable(BusError):
    """The transport could not be reached (after retries)."""


class BusRefused(BusError):
    """The broker refused this client: authentication failed, or the principal is not allowed
    to do what was asked (read a topic, write one, join a group...). No retry fixes it."""


class BusFenced(BusError):
    """A newer transactional producer with the same transactional id started, or a newer group
    member with the same instance id joined: this one may never commit again (Kafka's fencing).
    Either it is a zombie whose replacement already runs, or two live processes share an id."""


class Message(NamedTuple):
    """One consumed message. A named tuple, not a frozen dataclass: the predictor builds one per
    request, and a tuple is built about 3x faster (a frozen dataclass's ``__init__`` goes
    through ``object.__setattr__`` field by field)."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int = 0
    offset: int = -1
    # When the message was produced (Unix time, seconds; the broker's CreateTime on Kafka), 0.0
    # when unknown: the predictor's end-to-end latency starts here.
    timestamp: float = 0.0


class Producer(ABC):
    @abstractmethod
    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one message; never blocks on the network."""

    def produce_many(
        self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None]
    ) -> None:
        """Queue a batch of messages (``values[i]`` keyed by ``keys[i]``), as :meth:`produce`
        does one by one: a hot path's answers, with one Python call per batch instead of one
        (or, through :func:`streamfit.ops.batches.handle_isolating`, two) per message."""
        if len(values) != len(keys):  # checked first: nothing half-sent
            raise ValueError(f"{len(values)} values but {len(keys)} keys")
        produce = self.produce
        for value, key in zip(values, keys, strict=True):
            produce(topic, value, key)

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message is acknowledged; raise DeliveryError otherwise.

        ``None`` waits as long as the transport keeps trying a message before it fails it (a
        broker restart costs latency, not a lost or failed message)."""

    def close(self) -> None:
        """Flush and release resources."""
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Consumer(ABC):
    @abstractmethod
    def poll(self, max_messages: int = 1, timeout: float = 1.0) -> list[Message]:
        """Return up to ``max_messages`` waiting messages, waiting up to ``timeout`` for one."""

    @abstractmethod
    def commit(self) -> None:
        """Commit everything returned by ``poll`` so far (synchronously)."""

    def assigned(self) -> bool:
        """Whether the consumer has partitions to read (a group member may have none, or none
        yet while the group rebalances); a service is ready only once it has."""
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> messages not consumed yet, from what the client already knows
        (no network call); empty when the transport cannot tell."""
        return {}

    def close(self) -> None:
        """Leave the group without committing what was not committed."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TransactionalProducer(Producer):
    """A producer whose output and the consumer's offsets commit atomically (exactly-once).

    One transactional id, one live producer: :meth:`Bus.transactional_producer` returns it ready,
    after fencing any earlier producer of the same id (whose open transaction is aborted at
    once, so read_committed readers need not wait for it to time out). The earlier one's next
    ``commit_with`` raises :class:`BusFenced`.
    """

    def init(self) -> None:
        """Be ready for a transaction: done by :meth:`Bus.transactional_producer`, and again
        after :class:`TransactionAborted` before the input is read anew."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit_with(self, consumer: Consumer) -> None:
        """Commit the open transaction together with ``consumer``'s consumed offsets."""

    @abstractmethod
    def abort(self) -> None: ...


class Bus(ABC):
    """Factory of producers and consumers for one transport."""

    url: str

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
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
        """A consumer of ``topics`` in ``group``; ``group=None``: a broadcast consumer, which
        starts at the end of each partition, or ``replay`` messages before it (at most).

        ``max_poll_interval_s``: the longest its owner may work between two polls (a training
        round) before the group takes its partitions away; None: the transport's default. A
        member that dies is noticed sooner, by its missing heartbeats, whatever this says.

        ``instance_id``: the member's stable id (:mod:`streamfit.ops.instance`), kept across
        restarts: a consumer joining under the id of a dead member takes its partitions at
        once, and one joining under the id of a live member fences it (the fenced one's
        ``poll`` or ``commit`` raises :class:`BusFenced`). None: a member only for its life."""

    def transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        """A transactional producer, ready to ``begin``; any earlier one of ``transactional_id``
        is fenced (see :class:`TransactionalProducer`)."""
        raise BusError(f"{type(self).__name__} does not support transactions")

    def ensure_topics(self, partitions: dict[str, int]) -> None:
        """Create the topics (name -> partition count) that do not exist yet."""

    def close(self) -> None:
        """Release shared resources."""

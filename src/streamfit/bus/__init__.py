"""Transports. Only this package imports a Kafka client."""

from __future__ import annotations

from ._base import (
    Bus,
    BusError,
    BusRefused,
    BusUnavailable,
    Consumer,
    DeliveryError,
    Message,
    Producer,
    TransactionalProducer,
)
from ._memory import MemoryBus

__all__ = [
    "Bus",
    "BusError",
    "BusRefused",
    "BusUnavailable",
    "Consumer",
    "DeliveryError",
    "Message",
    "MemoryBus",
    "Producer",
    "TransactionalProducer",
    "get_bus",
]


def get_bus(url: str | None = None, options: dict[str, str] | None = None) -> Bus:
    """Return the bus for ``url``: None or ``memory://`` -> in-process; ``kafka://host:port``.

    ``options`` are passed through to the Kafka client (SASL/TLS settings and the like).
    """
    if url is None or url in ("memory", "memory://"):
        return MemoryBus()
    if url.startswith("kafka://"):
        from ._kafka import KafkaBus  # imported lazily: the memory bus needs no Kafka client

        return KafkaBus(url.removeprefix("kafka://"), options or {})
    raise ValueError(f"unknown bus URL {url!r}: expected 'memory://' or 'kafka://host:port'")

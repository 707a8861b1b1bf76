"""Transports. Only this package imports a Kafka client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import (
    Bus,
    BusError,
    BusFenced,
    BusRefused,
    BusUnavailable,
    Consumer,
    DeliveryError,
    Message,
    Producer,
    TransactionAborted,
    TransactionalProducer,
)
from ._memory import MemoryBus

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "Bus",
    "BusError",
    "BusFenced",
    "BusRefused",
    "BusUnavailable",
    "Consumer",
    "DeliveryError",
    "Message",
    "MemoryBus",
    "Producer",
    "TransactionAborted",
    "TransactionalProducer",
    "bus_for",
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


def bus_for(settings: Settings) -> Bus:
    """The bus a service's settings name, with its client options and password (if any)."""
    return get_bus(settings.bus, settings.bus_client_options())

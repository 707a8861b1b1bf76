"""Stores of shared state behind SQLAlchemy: SQLite embedded, PostgreSQL for several machines.

Every service that meets another through a database goes through a class of this package,
built from a URL (``--store``). The trial store lives with the trainer (``training.trials``).
"""

from __future__ import annotations

from ._sql import (
    StoreError,
    StoreUnavailable,
    add_columns,
    create_schema,
    make_engine,
    rename_columns,
    when_up,
    worth_waiting_for,
)
from .comparisons import Comparison, ComparisonStore
from .observations import (
    ObservationBatch,
    ObservationStore,
    OutboxMessage,
    Recorded,
)

__all__ = [
    "Comparison",
    "ComparisonStore",
    "ObservationBatch",
    "ObservationStore",
    "OutboxMessage",
    "Recorded",
    "StoreError",
    "StoreUnavailable",
    "add_columns",
    "create_schema",
    "make_engine",
    "rename_columns",
    "when_up",
    "worth_waiting_for",
]

"""One way to open a database for streamfit's stores: any SQLAlchemy URL, SQLite or PostgreSQL.

* SQLite: the file's directory is created; WAL (readers never wait for the writer) and a 30 s
  busy timeout; a write transaction starts with ``BEGIN IMMEDIATE``, so two writers queue for
  the lock instead of one failing half-way (a deferred transaction that reads and then writes
  can hit ``database is locked`` at its first write).
* PostgreSQL (``postgresql+psycopg://``): tables are created under an advisory lock, so services
  starting together do not race on ``CREATE TABLE``; a transaction aborted by a deadlock or a
  serialization failure is retried by :func:`transact`.
* Database errors come out as :class:`StoreUnavailable` (cannot reach the database: retry later)
  or :class:`StoreError` (this statement failed: its input is to blame), with the driver's own
  one-line reason, never a page of SQL.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
log = logging.getLogger("streamfit.stores")

_RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure
_ATTEMPTS = 5
_SCHEMA_LOCK = 0x5F5E100  # any constant: one advisory lock for every streamfit schema change


class StoreError(Exception):
    """A statement failed; the message is the database's reason."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the connection."""


# What a PostgreSQL server answers while it starts, stops or is full: waiting cures these.
_PASSING_REFUSALS = ("starting up", "shutting down", "in recovery mode", "too many clients")


def worth_waiting_for(url: str, exc: StoreUnavailable) -> bool:
    """Whether a store that could not be opened may open later: a PostgreSQL server that does
    not answer yet (or is starting, stopping, full), not one that refused these credentials or
    this database (its ``FATAL`` reason), nor an SQLite file that cannot be opened."""
    if sa.engine.make_url(url).get_backend_name() != "postgresql":
        return False
    reason = str(exc)
    return "FATAL:" not in reason or any(passing in reason for passing in _PASSING_REFUSALS)


def when_up(url: str, open_store: Callable[[str], T]) -> T:
    """``open_store(url)``, again after a backoff (up to 30 s) for as long as the PostgreSQL
    server at ``url`` does not answer yet (:func:`worth_waiting_for`): a service started with or
    before its database, as a host boots, starts once the database is up. A refusal (these
    credentials, this database) or an SQLite file that cannot be opened raises at once."""
    delay = 0.5
    while True:
        try:
            return open_store(url)
        except StoreUnavailable as exc:
            if not worth_waiting_for(url, exc):
                raise
            log.warning("store unavailable (%s): retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url`` with the settings above (no connection is opened yet)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def create_schema(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create the tables and indexes of ``metadata`` that do not exist yet."""
    with writing(engine) as db:
        if engine.dialect.name == "postgresql":
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        metadata.create_all(db)


def add_columns(engine: sa.Engine, table: sa.Table, names: Sequence[str]) -> None:
    """Give ``table``, made by an earlier version without them, its nullable columns ``names``
    (empty in the rows it has)."""
    quote = engine.dialect.identifier_preparer.quote

    def statements(have: set[str]) -> list[str]:
        return [
            f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(name)} "
            f"{table.c[name].type.compile(dialect=engine.dialect)}"
            for name in names
            if name not in have
        ]

    _upgrade(engine, table.name, statements)


def rename_columns(engine: sa.Engine, table: sa.Table, names: Mapping[str, str]) -> None:
    """Give ``table``'s columns named ``old`` by an earlier version their ``new`` names (each
    ``old: new`` of ``names``), rows kept."""
    quote = engine.dialect.identifier_preparer.quote

    def statements(have: set[str]) -> list[str]:
        return [
            f"ALTER TABLE {quote(table.name)} RENAME COLUMN {quote(old)} TO {quote(new)}"
            for old, new in names.items()
            if old in have and new not in have
        ]

    _upgrade(engine, table.name, statements)


def _upgrade(engine: sa.Engine, table: str, statements: Callable[[set[str]], list[str]]) -> None:
    """Run the ``ALTER TABLE`` statements that ``statements(the table's column names)`` asks
    for, asked again under the schema's write lock, so services upgrading together alter once."""
    with reading(engine) as db:
        if not statements({c["name"] for c in sa.inspect(db).get_columns(table)}):
            return
    with writing(engine) as db:
        if engine.dialect.name == "postgresql":
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        for statement in statements({c["name"] for c in sa.inspect(db).get_columns(table)}):
            db.exec_driver_sql(statement)


@contextlib.contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One write transaction (``BEGIN IMMEDIATE`` on SQLite): committed on success."""
    with _translated(), engine.connect() as db:
        db.execution_options(streamfit_write=True)
        with db.begin():
            yield db


def transact(engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    """Run ``work(db)`` in one write transaction, again from the start if PostgreSQL aborted it
    for a deadlock or a serialization failure (it then committed nothing)."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with writing(engine) as db:
                return work(db)
        except StoreError as exc:
            if attempt == _ATTEMPTS or getattr(exc, "sqlstate", None) not in _RETRYABLE_SQLSTATES:
                raise
    raise AssertionError("unreachable")


def copy_rows(
    db: sa.Connection,
    table: sa.Table,
    rows: Sequence[tuple[Any, ...]],
    names: Sequence[str] | None = None,
) -> None:
    """Append ``rows`` (values in the order of ``table``'s columns, or of the columns
    ``names``) to ``table``: PostgreSQL's ``COPY`` (one stream, no statement per row), SQLite's
    ``executemany``."""
    filled = list(table.columns) if names is None else [table.c[n] for n in names]
    columns = ", ".join(db.dialect.identifier_preparer.quote(c.name) for c in filled)
    name = db.dialect.identifier_preparer.format_table(table)
    if db.dialect.name != "postgresql":
        marks = ", ".join("?" * len(filled))
        db.exec_driver_sql(f"INSERT INTO {name} ({columns}) VALUES ({marks})", list(rows))
        return
    # Binary: no text to format here and parse there (bytea's hex doubles the data's size).
    statement = f"COPY {name} ({columns}) FROM STDIN (FORMAT BINARY)"
    types = [c.type.compile(dialect=db.dialect).lower() for c in filled]
    dbapi = db.dialect.loaded_dbapi
    try:
        with db.connection.dbapi_connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as exc:  # in SQLAlchemy's terms, which _translated words for us
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error) from exc


@contextlib.contextmanager
def reading(engine: sa.Engine) -> Iterator[sa.Connection]:
    with _translated(), engine.connect() as db:
        yield db


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sa.exc.DBAPIError as exc:
        orig = exc.orig
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        unavailable = exc.connection_invalidated or isinstance(
            exc, sa.exc.OperationalError | sa.exc.InterfaceError
        )
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate in _RETRYABLE_SQLSTATES:
            unavailable = False
        error = (StoreUnavailable if unavailable else StoreError)(reason)
        error.sqlstate = sqlstate  # type: ignore[attr-defined]
        raise error from exc
    except sa.exc.StatementError as exc:  # e.g. a value the driver cannot convert
        raise StoreError(str(exc.orig).strip() or type(exc.orig).__name__) from exc
    except OverflowError as exc:  # sqlite3: an integer beyond 64 bits, raised as is
        raise StoreError(str(exc)) from exc


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling off: SQLAlchemy's "begin" event below emits BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # Switching a new file to WAL can fail at once with "database is locked", busy timeout or
    # not, while another connection opens it too (trainers starting together): try again.
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA temp_store=MEMORY")  # temporary tables (a batch being staged)
    cursor.close()


def _sqlite_begin(db: sa.Connection) -> None:
    write = db.get_execution_options().get("streamfit_write", False)
    db.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

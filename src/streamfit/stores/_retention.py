"""Keeping the observation table bounded: time partitions on PostgreSQL, small deletes elsewhere.

On PostgreSQL a new observation table is partitioned by range of ``recorded_at`` (the epoch
second its row was created, set once): :class:`Partitions` creates the partition that will hold
a batch before the batch is written, half a partition ahead, so the DDL happens away from the
hot path; a DEFAULT partition takes any row no partition covers (a creation that timed out), so
no insert ever fails. Retention then drops whole partitions: one short catalogue change, however
many rows they hold, whose lock is given up after ``_LOCK_TIMEOUT`` rather than queue behind a
long reader (and the recorder behind it); the next pass tries again.

Elsewhere (SQLite, an unpartitioned PostgreSQL table made by an earlier streamfit) retention
deletes from the head of the table, in ``seq`` order, a few thousand rows per transaction: the
writer waits at most one such transaction, and no pass reads more than the rows it removes.

Retention never touches the stored counts (observations and labelled observations recorded so
far) nor the retrain mark: they count what was recorded, not what is still held, so the retrain
cadence neither fires again nor stalls when old rows leave.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass

import sqlalchemy as sa

from ..config import Retention
from ._sql import _SCHEMA_LOCK, StoreError, writing

log = logging.getLogger("streamfit.stores")

DAY_S = 86400
WEEK_S = 7 * DAY_S
_LOCK_TIMEOUT = "2s"  # a partition change waits this long for its lock, then tries next pass
_RETRY_S = 30.0  # after a partition could not be made, writers try again only this much later
_DELETE_BATCH = 5000  # rows per delete transaction (SQLite, an unpartitioned table)
_BOUNDS = re.compile(r"FROM \('?([-+\d.e]+)'?\) TO \('?([-+\d.e]+)'?\)")


@dataclass(frozen=True)
class Partition:
    """One range partition: rows with ``lo <= recorded_at < hi``."""

    name: str
    lo: float
    hi: float


@dataclass(frozen=True)
class Retained:
    """What one retention pass removed."""

    rows: int  # rows deleted one by one (counted); dropped partitions' rows are not counted
    partitions: list[str]


def partition_seconds(retention: Retention) -> int:
    """The width of the partitions a writer with ``retention`` makes: a quarter of the time
    kept (the table then holds at most a quarter more than asked, in about five partitions);
    a week under a row count alone; 30 days when everything is kept (a retention set later
    drops those whole, 30 days late at most). Every write probes each partition's request_id
    index once: few partitions keep that cheap."""
    if retention.seconds is not None:
        return int(max(1, retention.seconds // 4))
    return WEEK_S if retention.rows is not None else 30 * DAY_S


def is_partitioned(db: sa.Connection, table: str) -> bool:
    kind = db.execute(
        sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
    ).scalar()
    return kind == "p"


def create_partitioned(engine: sa.Engine, table: sa.Table) -> bool:
    """Create ``table`` (declared ``postgresql_partition_by``) and its DEFAULT partition unless
    a table of that name exists; True if the table there is partitioned."""
    with writing(engine) as db:
        db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        if not sa.inspect(db).has_table(table.name):
            table.metadata.create_all(db, tables=[table])
            quote = db.dialect.identifier_preparer.quote
            db.exec_driver_sql(
                f"CREATE TABLE {quote(table.name + '_default')} PARTITION OF {quote(table.name)} "
                "DEFAULT"
            )
        return is_partitioned(db, table.name)


def list_partitions(db: sa.Connection, table: str) -> list[Partition]:
    """The range partitions of ``table``, oldest first (the DEFAULT partition left out)."""
    rows = db.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).all()
    found = []
    for name, bound in rows:
        match = _BOUNDS.search(bound or "")
        if match:
            found.append(Partition(name, float(match[1]), float(match[2])))
    return sorted(found, key=lambda p: p.lo)


class Partitions:
    """The partitions of one partitioned table, as this process knows them (a cache of the
    catalogue, refreshed when a time is not covered); creates the ones a batch needs."""

    def __init__(self, engine: sa.Engine, table: str, width: int = DAY_S) -> None:
        self.engine = engine
        self.table = table
        self.width = width
        self._known: list[Partition] = []
        self._retry_at = 0.0  # monotonic time before which a failed creation is not retried

    def covered(self, at: float) -> bool:
        return any(p.lo <= at < p.hi for p in self._known)

    def ensure(self, at: float) -> None:
        """A partition holds ``at``, and one holds ``at + width / 2`` (created ahead)."""
        if self.covered(at) and self.covered(at + self.width / 2):
            return
        if time.monotonic() < self._retry_at:  # meanwhile the DEFAULT partition takes the rows
            return
        with writing(self.engine) as db:
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            db.execute(sa.text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
            self._known = list_partitions(db, self.table)
            for when in (at, at + self.width / 2):
                if not self.covered(when):
                    self._create(db, when)

    def _create(self, db: sa.Connection, at: float) -> None:
        lo = math.floor(at / self.width) * self.width
        hi = lo + self.width
        for other in self._known:  # fit between neighbours made with another width
            if other.hi <= at:
                lo = max(lo, math.ceil(other.hi))
            elif other.lo > at:
                hi = min(hi, math.floor(other.lo))
        quote = db.dialect.identifier_preparer.quote
        name = f"{self.table}_p{lo}"
        try:
            with db.begin_nested():  # a failure leaves the rows to the DEFAULT partition
                db.exec_driver_sql(
                    f"CREATE TABLE {quote(name)} PARTITION OF {quote(self.table)} "
                    f"FOR VALUES FROM ({lo}) TO ({hi})"
                )
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:  # the database is gone, not just this partition
                raise
            log.warning("partition %s not created (%s): its rows go to the default", name, exc.orig)
            self._retry_at = time.monotonic() + _RETRY_S
            return
        self._known.append(Partition(name, lo, hi))


def retain_partitions(engine: sa.Engine, table: str, retention: Retention, now: float) -> Retained:
    """Drop the partitions wholly older than ``retention.seconds`` and those beyond the newest
    ``retention.rows`` rows (whole partitions: up to one partition more is kept); delete the
    DEFAULT partition's old rows in small transactions."""
    with writing(engine) as db:
        partitions = list_partitions(db, table)
    doomed: dict[str, Partition] = {}
    if retention.seconds is not None:
        cutoff = now - retention.seconds
        doomed.update((p.name, p) for p in partitions if p.hi <= cutoff)
    if retention.rows is not None:
        kept = 0
        for partition in reversed(partitions):
            if kept >= retention.rows:
                doomed[partition.name] = partition
            else:
                with writing(engine) as db:
                    kept += db.exec_driver_sql(
                        f"SELECT count(*) FROM {_quoted(db, partition.name)}"
                    ).scalar_one()
    dropped = []
    for partition in sorted(doomed.values(), key=lambda p: p.lo):
        try:
            with writing(engine) as db:
                db.execute(sa.text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
                db.exec_driver_sql(f"DROP TABLE IF EXISTS {_quoted(db, partition.name)}")
        except StoreError as exc:  # a lock not granted in time: the next pass tries again
            log.warning("partition %s not dropped yet: %s", partition.name, exc)
            continue
        dropped.append(partition.name)
    removed = 0
    if retention.seconds is not None:
        removed = _delete_old_defaults(engine, f"{table}_default", now - retention.seconds)
    if dropped:
        log.info("retention dropped partition(s) %s", ", ".join(dropped))
    return Retained(removed, dropped)


def retain_rows(engine: sa.Engine, table: sa.Table, retention: Retention, now: float) -> Retained:
    """Delete the head of ``table`` (in ``seq`` order) while its rows are older than
    ``retention.seconds`` or beyond the newest ``retention.rows``: a few thousand per
    transaction, each read through the primary key. A row of unknown age (made before
    ``recorded_at`` existed, and with no other time) counts as old."""
    c = table.c
    beyond = None
    if retention.rows is not None:
        with writing(engine) as db:
            beyond = db.execute(
                sa.select(c.seq).order_by(c.seq.desc()).offset(retention.rows).limit(1)
            ).scalar()
    cutoff = None if retention.seconds is None else now - retention.seconds
    age = sa.func.coalesce(c.recorded_at, c.received_at, c.labelled_at, c.predicted_at)
    removed = 0
    while True:
        with writing(engine) as db:
            head = db.execute(sa.select(c.seq, age).order_by(c.seq).limit(_DELETE_BATCH)).all()
            old = []
            for seq, at in head:
                if (beyond is None or seq > beyond) and (
                    cutoff is None or (at is not None and at >= cutoff)
                ):
                    break
                old.append(seq)
            if old:
                db.execute(table.delete().where(c.seq >= old[0], c.seq <= old[-1]))
        removed += len(old)
        if len(old) < _DELETE_BATCH:
            break
    if removed:
        log.info("retention removed %d row(s)", removed)
    return Retained(removed, [])


def _delete_old_defaults(engine: sa.Engine, default: str, cutoff: float) -> int:
    """Delete the rows of the DEFAULT partition recorded before ``cutoff``, a batch per
    transaction (it holds only what no partition covered: normally nothing)."""
    removed = 0
    while True:
        with writing(engine) as db:
            name = _quoted(db, default)
            count = db.execute(
                sa.text(
                    f"DELETE FROM {name} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {name} "
                    "WHERE recorded_at < :cutoff LIMIT :n))"
                ),
                {"cutoff": cutoff, "n": _DELETE_BATCH},
            ).rowcount
        removed += count
        if count < _DELETE_BATCH:
            return removed


def _quoted(db: sa.Connection, name: str) -> str:
    return db.dialect.identifier_preparer.quote(name)

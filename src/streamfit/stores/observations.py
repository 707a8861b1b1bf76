"""The observation store: one row per ``request_id``, whatever order its parts arrive in.

A row gathers the request (the raw JSON message as it arrived, so nothing is re-encoded), the
prediction (probability, model version) and the true label, each with the time it was recorded.
The three come from three topics and may arrive in any order and more than once: every part is
an upsert that fills only what is still empty (first write wins), so a redelivered message
changes nothing and a label that comes before its request waits in the row (a *pending label*)
until the request joins it. A *labelled observation* is a row with both data and a label.

:meth:`ObservationStore.record` also keeps the retrain counter: in the same transaction as the
upserts it moves a stored count of labelled observations by the rows the batch completes (so a
batch costs the same on a table of a thousand rows or of millions), compares ``labelled // every``
with the last threshold published (marks stored in the database, row-locked on PostgreSQL so
concurrent recorders count correctly) and queues one
command per new threshold in a transactional *outbox*; :meth:`ObservationStore.sending` hands the
unsent commands out and marks them sent once the caller has delivered them. A recorder that dies
anywhere in between neither skips nor repeats a threshold.

:meth:`ObservationStore.retain` keeps the table bounded (``retain``: a duration and/or a row
count, applied by the recorder): on PostgreSQL a new table is partitioned by ``recorded_at``
and whole partitions are dropped; on SQLite, and on an unpartitioned PostgreSQL table made by
an earlier streamfit (kept as it is: it works, retention deletes from it in small batches; to
partition it, let a new table fill and drop the old), old rows are deleted a few thousand per
transaction. The counts and the retrain mark stay those of everything recorded
(:mod:`._retention`).

Any SQLAlchemy URL: ``sqlite:///path/observations.db`` (the embedded default) or
``postgresql+psycopg://user:password@host/db`` for services on several machines.

>>> import tempfile
>>> store = ObservationStore(f"sqlite:///{tempfile.mkdtemp()}/o.db")
>>> _ = store.record(ObservationBatch(labels=[("r1", 1)]))  # the label comes first
>>> store.count(labelled=True), store.pending_labels()
(0, 1)
>>> outcome = store.record(
...     ObservationBatch(requests=[("r1", b'{"request_id": "r1", "data": {"age": 39}}')]),
...     every=1,
...     command=lambda threshold, labelled: ("retrain", b"%d" % threshold),
... )
>>> outcome.labelled, outcome.thresholds, store.pending_labels()
(1, [1], 0)
>>> with store.sending() as unsent:
...     [(m.topic, m.value) for m in unsent]
[('retrain', b'1')]
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from ..config import Retention
from . import _retention
from ._retention import Retained
from ._sql import add_columns, copy_rows, create_schema, make_engine, reading, transact, writing

_metadata = sa.MetaData()
_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER

observations_table = sa.Table(
    "observations",
    _metadata,
    sa.Column("seq", _BigInt, primary_key=True, autoincrement=True),  # row creation order
    sa.Column("request_id", sa.Text, nullable=False, unique=True),
    sa.Column("data", sa.LargeBinary),  # the request message as it arrived
    sa.Column("received_at", sa.Float),
    # The prediction: binary P(positive class), multiclass the class's index, regression the value
    sa.Column("probability", sa.Float),
    sa.Column("model_version", sa.BigInteger),
    sa.Column("predicted_at", sa.Float),
    sa.Column("label", sa.Float),  # the encoded label: 0/1, a class index or a value
    sa.Column("labelled_at", sa.Float),
    # The shadowed challenger's answer to the same request (streamfit.challengers.comparison
    # compares them).
    sa.Column("shadow_version", sa.BigInteger),
    sa.Column("shadow_probability", sa.Float),
    # When the row was created (its first part recorded), never changed: what retention ages
    # rows by, and the partition key on PostgreSQL.
    sa.Column("recorded_at", sa.Float),
)
_obs = observations_table.c
_observed = _obs.data.is_not(None)
_labelled = sa.and_(_observed, _obs.label.is_not(None))
sa.Index(
    "observations_labelled_v2",
    _obs.labelled_at,
    _obs.seq,
    sqlite_where=_labelled,
    postgresql_where=_labelled,
)
sa.Index(
    "observations_received_v2",
    _obs.received_at,
    _obs.seq,
    sqlite_where=_obs.data.is_not(None),
    postgresql_where=_obs.data.is_not(None),
)
sa.Index(  # pending labels: rows without a request yet (few; counted on every sweep)
    "observations_pending",
    _obs.seq,
    sqlite_where=_obs.data.is_(None),
    postgresql_where=_obs.data.is_(None),
)

# A new table on PostgreSQL: the same columns, range-partitioned by recorded_at (see
# stores/_retention.py). A unique index on a partitioned table must hold the partition key, so
# request_id's is a plain one: the counter's row lock, held from before the merge to the
# commit, is what keeps one row per request_id there.
_partitioned_metadata = sa.MetaData()
_SEQ = sa.Sequence("observations_seq_seq", metadata=_partitioned_metadata)
partitioned_table = sa.Table(
    "observations",
    _partitioned_metadata,
    sa.Column("seq", sa.BigInteger, _SEQ, server_default=_SEQ.next_value(), nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    *(c._copy() for c in observations_table.columns if c.name not in ("seq", "request_id")),
    postgresql_partition_by="RANGE (recorded_at)",
)
for _index in list(observations_table.indexes):
    sa.Index(
        _index.name,
        *(partitioned_table.c[c.name] for c in _index.columns),
        postgresql_where=_index.dialect_options["postgresql"]["where"],
    )
sa.Index("observations_request_id", partitioned_table.c.request_id)
sa.Index("observations_seq", partitioned_table.c.seq)

# Named counters, e.g. the last retrain threshold published ("retrain_mark").
marks_table = sa.Table(
    "observation_marks",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
RETRAIN_MARK = "retrain_mark"
# Observations and labelled observations so far, kept in step with every upsert: counting them
# afresh on every batch (or every monitor poll) would cost O(table), a cost that grows for as
# long as the stream runs.
OBSERVED_COUNT = "observed_count"
LABELLED_COUNT = "labelled_count"

outbox_table = sa.Table(
    "outbox",
    _metadata,
    sa.Column("id", _BigInt, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.LargeBinary),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float),
)
sa.Index(
    "outbox_unsent",
    outbox_table.c.id,
    sqlite_where=outbox_table.c.sent_at.is_(None),
    postgresql_where=outbox_table.c.sent_at.is_(None),
)

# Columns an upsert may fill, each only while it is still NULL, in the order a batch stages them
# (position, request_id, then these): each part's columns side by side, so _rows fills a part
# with one slice.
_FILLED = (
    "data",
    "received_at",
    "probability",
    "model_version",
    "predicted_at",
    "label",
    "labelled_at",
    "shadow_version",
    "shadow_probability",
    "recorded_at",
)
# The columns whose filling changes a row (a labelled_at only ever comes with its label; a
# recorded_at with the row).
_PARTS = tuple(name for name in _FILLED if name not in ("labelled_at", "recorded_at"))
_POSITION = {name: at for at, name in enumerate(_FILLED, start=2)}


def _double(kind: sa.types.TypeEngine) -> sa.types.TypeEngine:
    return sa.Double() if isinstance(kind, sa.Float) else kind


# One batch on its way in: bulk-loaded (COPY on PostgreSQL, executemany on SQLite), counted and
# merged into the observations by one statement each, so a batch costs a few round trips
# whatever its size. Temporary: private to its connection, emptied when the batch commits.
staged_table = sa.Table(
    "observations_staged",
    sa.MetaData(),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    # Doubles, not Floats: COPY's binary format wants the type's own name (FLOAT is an alias).
    *(sa.Column(name, _double(observations_table.c[name].type)) for name in _FILLED),
    # What a partitioned table already holds for the request (filled by _lookup_statement):
    # where its row is (partition key and seq), and whether it has data and a label.
    sa.Column("old_at", sa.Double),
    sa.Column("old_seq", sa.BigInteger),
    sa.Column("had_data", sa.Boolean),
    sa.Column("had_label", sa.Boolean),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)


@dataclass
class ObservationBatch:
    """What one batch of messages says about its requests, in arrival order."""

    requests: list[tuple[str, bytes]] = field(default_factory=list)  # (id, raw request JSON)
    predictions: list[tuple[str, float, int]] = field(default_factory=list)  # (id, p, version)
    labels: list[tuple[str, float]] = field(default_factory=list)  # (id, encoded label)
    # (id, version, probability) of a shadowed challenger, from the same prediction messages
    shadows: list[tuple[str, int, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.requests) + len(self.predictions) + len(self.labels)


@dataclass(frozen=True)
class Recorded:
    """The store after :meth:`ObservationStore.record`: labelled observations in it, and the
    retrain thresholds this call crossed (each queued once in the outbox)."""

    labelled: int
    thresholds: list[int]


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    value: bytes
    key: bytes | None = None


# command(threshold, labelled) -> (topic, value) of the message to publish for that threshold.
Command = Callable[[int, int], tuple[str, bytes]]


class ObservationStore:
    """Observations behind SQLAlchemy Core; creates its tables on first use."""

    def __init__(self, url: str, *, partition_seconds: int | None = None) -> None:
        """``partition_seconds``: the width of the partitions this store creates (PostgreSQL),
        by default :func:`_retention.partition_seconds` of keeping everything; a writer with a
        retention passes that of its retention."""
        self.url = url
        self.engine = make_engine(url)
        self.partitions: _retention.Partitions | None = None
        if self.engine.dialect.name == "sqlite":
            _migrate_sqlite_v1(self.engine)
        elif _retention.create_partitioned(self.engine, partitioned_table):  # PostgreSQL
            width = partition_seconds or _retention.partition_seconds(Retention())
            self.partitions = _retention.Partitions(self.engine, "observations", width)
        create_schema(self.engine, _metadata)
        _add_shadow_columns(self.engine)
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise ValueError(f"observation store needs SQLite or PostgreSQL, got {dialect!r}")
        self._insert = insert
        self._create_staged = sa.schema.CreateTable(staged_table, if_not_exists=True)
        # A partitioned table: the request_ids are looked up once (every partition's index)
        # and the rows then reached by (partition key, seq), one partition each.
        self._lookup, self._completed, self._merge = (
            ((), _COMPLETED, _merge_statement(insert))
            if self.partitions is None
            else ((_lookup_statement(),), _FOUND_COMPLETED, _partitioned_merge())
        )
        self._start_counts()

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs."""
        return self.engine.url.render_as_string(hide_password=True)

    # -- writing ------------------------------------------------------------------------------
    def record(
        self,
        batch: ObservationBatch,
        *,
        every: int = 0,
        command: Command | None = None,
        now: float | None = None,
    ) -> Recorded:
        """Upsert ``batch`` in one transaction; with ``every``, queue ``command`` for each
        multiple of ``every`` labelled observations reached beyond the stored mark."""
        if every < 0 or (every and command is None):
            raise ValueError("record needs every >= 0, and a command when every > 0")
        now = time.time() if now is None else now
        rows = _rows(batch, now)
        if rows and self.partitions is not None:
            self.partitions.ensure(now)

        def work(db: sa.Connection) -> Recorded:
            if rows:  # into this connection's own table: concurrent recorders stage at once
                db.execute(self._create_staged)
                copy_rows(db, staged_table, rows, _STAGED)
            # The counter's row lock serialises concurrent recorders from here to their commit
            # (SQLite's BEGIN IMMEDIATE already does); in READ COMMITTED each statement then
            # sees all that the previous holders wrote, so the rows' states read below are
            # exact and the counter moves by exactly the rows this batch completes.
            counted = _locked_mark(db, LABELLED_COUNT)
            observed = labelled = 0
            if rows:
                if db.dialect.name == "postgresql":
                    db.execute(_NESTED_LOOPS)
                for statement in self._lookup:
                    db.execute(statement)
                observed, labelled = db.execute(self._completed).one()
                for statement in self._merge:
                    db.execute(statement)
                if db.dialect.name == "sqlite":  # PostgreSQL empties it at commit
                    db.execute(staged_table.delete())
            if observed:
                _set_mark(db, OBSERVED_COUNT, _locked_mark(db, OBSERVED_COUNT) + observed)
            labelled += counted
            if labelled != counted:
                _set_mark(db, LABELLED_COUNT, labelled)
            if not every:
                return Recorded(labelled, [])
            return self._advance(db, labelled, every, command)  # type: ignore[arg-type]

        return transact(self.engine, work)

    def _start_counts(self) -> None:
        """Count the rows once, for a store written before the kept counts existed. The
        INSERT ... SELECT counts the table even when its row exists, so only missing counts
        are counted: opening a store of millions of rows stays cheap."""
        with writing(self.engine) as db:
            kept = set(db.execute(sa.select(marks_table.c.name)).scalars())
            for name, where in ((OBSERVED_COUNT, _observed), (LABELLED_COUNT, _labelled)):
                if name in kept:
                    continue
                db.execute(
                    self._insert(marks_table)
                    .from_select(
                        ["name", "value"], sa.select(sa.literal(name), sa.func.count()).where(where)
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                )

    def _advance(self, db: sa.Connection, labelled: int, every: int, command: Command) -> Recorded:
        db.execute(
            self._insert(marks_table)
            .values(name=RETRAIN_MARK, value=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        mark = _locked_mark(db, RETRAIN_MARK)
        reached = labelled // every
        if reached <= mark:
            return Recorded(labelled, [])
        thresholds = [k * every for k in range(mark + 1, reached + 1)]
        created = time.time()
        outbox = []
        for threshold in thresholds:
            topic, value = command(threshold, labelled)
            # Keyed by its threshold: a restarted recorder recognises what is already published.
            key = str(threshold).encode()
            outbox.append({"topic": topic, "key": key, "value": value, "created_at": created})
        db.execute(outbox_table.insert(), outbox)
        _set_mark(db, RETRAIN_MARK, reached)
        return Recorded(labelled, thresholds)

    def retain(self, retention: Retention, now: float | None = None) -> Retained:
        """Remove the rows ``retention`` no longer keeps (recorded before ``now`` minus its
        duration, or beyond its newest rows): whole partitions on a partitioned table, else
        small deletes, each in a short transaction of its own, so a writer is never held up
        for long. The counts and the retrain mark are left as they are (see _retention)."""
        now = time.time() if now is None else now
        if not retention.bounded:
            return Retained(0, [])
        if self.partitions is not None:
            self.partitions.ensure(now)  # the next rows' partition, made off the hot path
            return _retention.retain_partitions(self.engine, "observations", retention, now)
        return _retention.retain_rows(self.engine, observations_table, retention, now)

    def size(self) -> tuple[int, int]:
        """Rows held and bytes on disk (table and indexes; the whole file on SQLite). Counts
        the rows: for reports, not for a hot path."""
        with reading(self.engine) as db:
            rows = db.execute(sa.select(sa.func.count()).select_from(observations_table))
            rows = rows.scalar_one()
            if db.dialect.name == "sqlite":
                pages = db.exec_driver_sql("PRAGMA page_count").scalar_one()
                size = pages * db.exec_driver_sql("PRAGMA page_size").scalar_one()
            else:
                size = db.exec_driver_sql(  # a table not partitioned has no partition tree
                    "SELECT coalesce(sum(pg_total_relation_size(relid)), "
                    "pg_total_relation_size('observations')) FROM pg_partition_tree('observations')"
                ).scalar_one()
        return int(rows), int(size or 0)

    @contextlib.contextmanager
    def sending(self) -> Iterator[list[OutboxMessage]]:
        """The unsent outbox messages, oldest first, marked sent when the block ends normally.

        Deliver them (produce and flush) inside the block: an exception leaves them unsent for
        the next call. The rows stay locked meanwhile (SKIP LOCKED on PostgreSQL), so two
        recorders never both send one.
        """
        box = outbox_table.c
        with writing(self.engine) as db:
            rows = db.execute(
                sa.select(box.id, box.topic, box.value, box.key)
                .where(box.sent_at.is_(None))
                .order_by(box.id)
                .with_for_update(skip_locked=True)
            ).all()
            yield [OutboxMessage(r.id, r.topic, r.value, r.key) for r in rows]
            if rows:
                db.execute(
                    outbox_table.update()
                    .where(box.id.in_([r.id for r in rows]))
                    .values(sent_at=time.time())
                )

    def unsent(self) -> int:
        """Outbox messages not yet delivered."""
        with reading(self.engine) as db:
            return db.execute(
                sa.select(sa.func.count()).where(outbox_table.c.sent_at.is_(None))
            ).scalar_one()

    def retrain_mark(self) -> int:
        """How many thresholds of the retrain counter were published (queued) so far."""
        return self._mark(RETRAIN_MARK)

    # -- reading ------------------------------------------------------------------------------
    def count(self, labelled: bool = False) -> int:
        """Observations (rows with a request) recorded so far, rows retention removed included;
        ``labelled``: those that also have a label.

        Read from the counts :meth:`record` keeps, so it costs the same on any table size."""
        return self._mark(LABELLED_COUNT if labelled else OBSERVED_COUNT)

    def pending_labels(self) -> int:
        """Labels whose request has not been seen (yet)."""
        with reading(self.engine) as db:
            return db.execute(
                sa.select(sa.func.count()).where(_obs.data.is_(None), _obs.label.is_not(None))
            ).scalar_one()

    def get(self, request_id: str) -> dict[str, Any] | None:
        """Everything known about one request, or None."""
        with reading(self.engine) as db:
            row = db.execute(
                sa.select(observations_table).where(_obs.request_id == request_id)
            ).first()
        return None if row is None else dict(row._mapping)

    def labelled_frame(self, limit: int | None = None) -> pd.DataFrame:
        """Labelled observations, oldest first, as raw Adult columns plus ``label``.

        ``limit`` keeps only the most recent ones.
        """
        extra = ["label", "probability", "model_version", "labelled_at"]
        return _frame(self._latest_labelled(["request_id", "data", *extra], limit), extra)

    def recorded_slice(
        self,
        since: float | None = None,
        until: float | None = None,
        last: int | None = None,
    ) -> pd.DataFrame:
        """Labelled observations received in ``[since, until)`` (epoch seconds; either may be
        None), the newest ``last`` of them if given, oldest first, as raw Adult columns plus
        ``label``, ``probability``, ``model_version``, ``received_at`` (``streamfit replay``)."""
        extra = ["label", "probability", "model_version", "received_at"]
        query = sa.select(_obs.request_id, _obs.data, *(_obs[name] for name in extra)).where(
            _labelled, _obs.data.is_not(None)
        )
        if since is not None:
            query = query.where(_obs.received_at >= since)
        if until is not None:
            query = query.where(_obs.received_at < until)
        query = query.order_by(_obs.received_at.desc(), _obs.seq.desc())
        if last is not None:
            query = query.limit(int(last))
        with reading(self.engine) as db:
            rows = [tuple(r) for r in db.execute(query)][::-1]
        return _frame(rows, extra)

    def labelled_outcomes(self, limit: int | None = None) -> pd.DataFrame:
        """``label``, ``probability``, ``model_version`` of labelled observations whose
        prediction is recorded (realised performance needs both), oldest first.

        No request is decoded: the monitor's realised metrics read many rows every check.
        """
        columns = ["label", "probability", "model_version"]
        rows = self._latest_labelled(columns, limit, predicted=True)
        return pd.DataFrame(rows, columns=columns)

    def shadow_pairs(
        self, champion: int, challenger: int, limit: int | None = None
    ) -> pd.DataFrame:
        """``label``, ``probability`` (the champion's), ``shadow_probability`` (the
        challenger's) and ``canary`` (True where the challenger answered: canary mode, where the
        two swap places in the prediction) of the labelled requests both scored, in the order
        their labels were completed (label and prediction both in: the order a sequential test
        sees them, new pairs always after the ones before); the first ``limit`` only."""
        completed = sa.case(
            (_obs.predicted_at > _obs.labelled_at, _obs.predicted_at), else_=_obs.labelled_at
        )
        query = (
            self._pairs_query(champion, challenger).where(_labelled).order_by(completed, _obs.seq)
        )
        if limit is not None:
            query = query.limit(int(limit))
        with reading(self.engine) as db:
            rows = [tuple(r) for r in db.execute(query)]
        return pd.DataFrame(rows, columns=["label", "probability", "shadow_probability", "canary"])

    def shadow_scores(self, champion: int, challenger: int, limit: int) -> pd.DataFrame:
        """``probability`` (the champion's) and ``shadow_probability`` (the challenger's) of the
        latest ``limit`` requests both scored, labelled or not: what the label-free estimates of
        both rest on before labels come."""
        pairs = self._pairs_query(champion, challenger).order_by(_obs.seq.desc()).limit(limit)
        with reading(self.engine) as db:
            rows = [tuple(r)[1:3] for r in db.execute(pairs)]
        return pd.DataFrame(rows, columns=["probability", "shadow_probability"], dtype=float)

    def canary_answers(self, champion: int, challenger: int) -> np.ndarray:
        """The probabilities ``challenger`` answered with, beside ``champion``, labelled or not
        (the label-free check of a canary before its labels come)."""
        query = sa.select(_obs.probability).where(
            _obs.model_version == challenger,
            _obs.shadow_version == champion,
            _obs.probability.is_not(None),
        )
        with reading(self.engine) as db:
            return np.array([r[0] for r in db.execute(query)], dtype=float)

    @staticmethod
    def _pairs_query(champion: int, challenger: int) -> sa.Select:
        canary = _obs.model_version == challenger
        return sa.select(
            _obs.label,
            sa.case((canary, _obs.shadow_probability), else_=_obs.probability),
            sa.case((canary, _obs.probability), else_=_obs.shadow_probability),
            canary,
        ).where(
            sa.or_(
                sa.and_(_obs.model_version == champion, _obs.shadow_version == challenger),
                sa.and_(canary, _obs.shadow_version == champion),
            ),
            _obs.probability.is_not(None),
            _obs.shadow_probability.is_not(None),
        )

    def recent_frame(self, limit: int) -> pd.DataFrame:
        """The most recent observations (by arrival of the request), labelled or not, oldest
        first."""
        with reading(self.engine) as db:
            rows = [tuple(r) for r in db.execute(_recent_query(limit))][::-1]
        return _frame(rows, ["label", "probability", "model_version", "received_at"])

    def close(self) -> None:
        self.engine.dispose()

    # -- internals ----------------------------------------------------------------------------
    def _mark(self, name: str) -> int:
        with reading(self.engine) as db:
            value = db.execute(
                sa.select(marks_table.c.value).where(marks_table.c.name == name)
            ).scalar()
        return int(value or 0)

    def _latest_labelled(
        self, columns: list[str], limit: int | None, *, predicted: bool = False
    ) -> list[tuple]:
        """``columns`` of the labelled observations (the newest ``limit``), oldest first;
        ``predicted``: only those whose prediction is recorded too."""
        query = _latest_labelled_query(columns, limit, predicted=predicted)
        with reading(self.engine) as db:
            return [tuple(r) for r in db.execute(query)][::-1]


def _latest_labelled_query(
    columns: list[str], limit: int | None, *, predicted: bool = False
) -> sa.Select:
    """The newest labelled observations first: the training window and the monitor's realised
    metrics, read backwards through the (labelled_at, seq) index of the labelled rows."""
    where = sa.and_(_labelled, _obs.probability.is_not(None)) if predicted else _labelled
    query = (
        sa.select(*(_obs[name] for name in columns))
        .where(where)
        .order_by(_obs.labelled_at.desc(), _obs.seq.desc())
    )
    return query if limit is None else query.limit(int(limit))


def _recent_query(limit: int) -> sa.Select:
    """The newest observations by arrival of the request, through the (received_at, seq)
    index: the monitor's drift window."""
    return (
        sa.select(
            _obs.request_id,
            _obs.data,
            _obs.label,
            _obs.probability,
            _obs.model_version,
            _obs.received_at,
        )
        .where(_obs.data.is_not(None))
        .order_by(_obs.received_at.desc(), _obs.seq.desc())
        .limit(int(limit))
    )


def _rows(batch: ObservationBatch, now: float) -> list[tuple[Any, ...]]:
    """The staged rows: one per request_id (an upsert may touch a row only once), in
    first-arrival order; within the batch too, the first value of a part wins."""
    rows: dict[str, list[Any]] = {}
    empty = [None] * len(_FILLED)

    recorded = _POSITION["recorded_at"]

    def row(request_id: str) -> list[Any]:
        found = rows.get(request_id)
        if found is None:
            found = rows[request_id] = [len(rows), request_id, *empty]
            found[recorded] = now
        return found

    data, probability, label, shadow = (
        _POSITION[name] for name in ("data", "probability", "label", "shadow_probability")
    )
    for request_id, message in batch.requests:
        entry = row(request_id)
        if entry[data] is None:
            entry[data : data + 2] = message, now
    for request_id, p, version in batch.predictions:
        entry = row(request_id)
        if entry[probability] is None:
            entry[probability : probability + 3] = p, version, now
    for request_id, value in batch.labels:
        entry = row(request_id)
        if entry[label] is None:
            entry[label : label + 2] = value, now
    for request_id, version, p in batch.shadows:
        entry = row(request_id)
        if entry[shadow] is None:
            entry[shadow - 1 : shadow + 1] = version, p
    return list(map(tuple, rows.values()))


def _locked_mark(db: sa.Connection, name: str) -> int:
    """The value of the mark ``name``, its row locked until the transaction ends."""
    return db.execute(
        sa.select(marks_table.c.value).where(marks_table.c.name == name).with_for_update()
    ).scalar_one()


def _set_mark(db: sa.Connection, name: str, value: int) -> None:
    db.execute(marks_table.update().where(marks_table.c.name == name).values(value=value))


def _completed_statement() -> sa.Select:
    """How many staged rows the merge will make observations (their request arrives) and
    labelled observations (data and label both present), in one pass over the batch.

    A merge only fills what is empty, so a row's state after it is its state before it or
    what the batch brings; only rows that bring data or a label can change it.
    """
    new, old = staged_table.c, _obs
    observed = sa.and_(new.data.is_not(None), old.data.is_(None))
    labelled = sa.and_(
        sa.func.coalesce(old.data, new.data).is_not(None),
        sa.func.coalesce(old.label, new.label).is_not(None),
        sa.or_(old.data.is_(None), old.label.is_(None)),
    )
    return (
        sa.select(sa.func.count().filter(observed), sa.func.count().filter(labelled))
        .select_from(staged_table.outerjoin(observations_table, old.request_id == new.request_id))
        .where(sa.or_(new.data.is_not(None), new.label.is_not(None)))
    )


# The temporary table has no statistics: PostgreSQL would hash-join it with a scan of the whole
# observation table. A nested loop, one probe of the request_id index per staged row, is the
# plan at any table size (SQLite's own for a LEFT JOIN); for this transaction only.
_NESTED_LOOPS = sa.text(
    "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
)


_COMPLETED = _completed_statement()
_STAGED = ("position", "request_id", *_FILLED)


def _lookup_statement() -> Any:
    """Note in each staged row where its request's row is and what it holds: the only
    statement that probes every partition."""
    new = staged_table.c
    return (
        staged_table.update()
        .where(_obs.request_id == new.request_id)
        .values(
            old_at=_obs.recorded_at,
            old_seq=_obs.seq,
            had_data=_obs.data.is_not(None),
            had_label=_obs.label.is_not(None),
        )
    )


def _found_completed_statement() -> sa.Select:
    """:func:`_completed_statement` from what :func:`_lookup_statement` noted."""
    new = staged_table.c
    had_data = sa.func.coalesce(new.had_data, False)
    had_label = sa.func.coalesce(new.had_label, False)
    observed = sa.and_(new.data.is_not(None), ~had_data)
    labelled = sa.and_(
        sa.or_(had_data, new.data.is_not(None)),
        sa.or_(had_label, new.label.is_not(None)),
        ~sa.and_(had_data, had_label),
    )
    return sa.select(sa.func.count().filter(observed), sa.func.count().filter(labelled))


_FOUND_COMPLETED = _found_completed_statement()


def _merge_statement(insert: Any) -> tuple[Any, ...]:
    """The staged batch into the observations, in staged order (``seq`` follows arrival)."""
    names = ["request_id", *_FILLED]
    staged = (
        sa.select(*(staged_table.c[name] for name in names))
        .where(sa.true())  # SQLite: an upsert's SELECT needs a WHERE, to parse
        .order_by(staged_table.c.position)
    )
    statement = insert(observations_table).from_select(names, staged)
    new = statement.excluded
    # Fill what is empty, never overwrite: idempotent and independent of arrival order. A row
    # that would not change is not written at all (a redelivered message costs one index probe).
    fills = {name: sa.func.coalesce(_obs[name], new[name]) for name in _FILLED}
    changes = sa.or_(*(sa.and_(_obs[name].is_(None), new[name].is_not(None)) for name in _PARTS))
    return (
        statement.on_conflict_do_update(
            index_elements=[_obs.request_id], set_=fills, where=changes
        ),
    )


def _partitioned_merge() -> tuple[Any, ...]:
    """The same merge without ON CONFLICT (no unique index to conflict on), after
    :func:`_lookup_statement`: fill the empty columns of the rows found, each reached in its
    own partition, then insert the rest in staged order. Exact because the counter's row lock
    keeps a concurrent recorder out from before the lookup until this transaction commits."""
    new = staged_table.c
    fills = {
        name: sa.func.coalesce(_obs[name], new[name]) for name in _FILLED if name != "recorded_at"
    }
    changes = sa.or_(*(sa.and_(_obs[name].is_(None), new[name].is_not(None)) for name in _PARTS))
    update = (
        observations_table.update()
        .where(_obs.recorded_at == new.old_at, _obs.seq == new.old_seq, changes)
        .values(fills)
    )
    names = ["request_id", *_FILLED]
    staged = (
        sa.select(*(new[name] for name in names))
        .where(new.old_seq.is_(None))
        .order_by(new.position)
    )
    return update, observations_table.insert().from_select(names, staged)


def _add_shadow_columns(engine: sa.Engine) -> None:
    """Give an observation table made before shadow scoring its two shadow columns, and one
    made before retention its recorded_at (empty: such rows are aged by their other times)."""
    add_columns(engine, observations_table, ("shadow_version", "shadow_probability", "recorded_at"))


def _migrate_sqlite_v1(engine: sa.Engine) -> None:
    """Bring an ``observations.db`` written by the predictor of streamfit 0.1 (request_id
    primary key, data and received_at NOT NULL, no predicted_at) to this schema, rows kept."""
    with writing(engine) as db:
        inspector = sa.inspect(db)
        if not inspector.has_table("observations"):
            return
        if "seq" in {c["name"] for c in inspector.get_columns("observations")}:
            return
        db.exec_driver_sql("ALTER TABLE observations RENAME TO observations_v1")
        db.exec_driver_sql("DROP INDEX IF EXISTS observations_labelled")
        _metadata.create_all(db, tables=[observations_table])
        db.exec_driver_sql(
            "INSERT INTO observations (request_id, data, received_at, probability, "
            "model_version, predicted_at, label, labelled_at) "
            "SELECT request_id, data, received_at, probability, model_version, "
            "CASE WHEN probability IS NULL THEN NULL ELSE received_at END, label, labelled_at "
            "FROM observations_v1 ORDER BY rowid"
        )
        db.exec_driver_sql("DROP TABLE observations_v1")


def _frame(rows: Sequence[tuple], extra: list[str]) -> pd.DataFrame:
    """The requests' data as columns (whatever columns they carry: the store knows no
    contract; a caller takes the ones it needs), then ``request_id`` and ``extra``. A column of
    numbers and nulls is float64."""
    records = []
    for request_id, data, *rest in rows:
        record = orjson.loads(data)
        if isinstance(record.get("data"), dict):  # the whole request message, as it arrived
            record = record["data"]
        record = {name: value for name, value in record.items() if name not in _RESERVED}
        record["request_id"] = request_id
        record.update(zip(extra, rest, strict=True))
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    frame = frame.reindex(
        columns=[*(c for c in frame.columns if c not in _RESERVED), "request_id", *extra]
    )
    for name in frame.columns[: -1 - len(extra)]:
        values = frame[name]
        if values.dtype == object and values.map(_is_number_or_none).all():
            frame[name] = pd.to_numeric(values, errors="coerce").astype("float64")
    return frame


# Columns of a frame the store fills itself; a request's column of the same name is dropped.
_RESERVED = frozenset(
    ("request_id", "label", "probability", "model_version", "labelled_at", "received_at")
)


def _is_number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))

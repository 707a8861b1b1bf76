"""Retention's contract, once per back end (SQLite, the real PostgreSQL): only old rows leave,
the counts and the retrain cadence are those of everything recorded, writers keep writing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from streamfit import messages
from streamfit.config import Retention
from streamfit.stores import ObservationBatch, ObservationStore, _retention
from streamfit.stores.observations import observations_table

DAY = 86400.0
# 18:00 UTC of the latest day that has passed it: PostgreSQL drops whole day-wide partitions,
# so a bound of half a day removes yesterday's rows only late in the day (from noon on).
NOW = (time.time() - 0.75 * DAY) // DAY * DAY + 0.75 * DAY
WEEK = Retention(seconds=7 * DAY)


@pytest.fixture
def store(store_url: str) -> Iterator[ObservationStore]:
    store = ObservationStore(store_url, partition_seconds=int(DAY))
    yield store
    store.close()


def _labelled(prefix: str, n: int) -> ObservationBatch:
    ids = [f"{prefix}{i}" for i in range(n)]
    return ObservationBatch(
        requests=[(i, messages.request(i, {"age": 40})) for i in ids],
        predictions=[(i, 0.5, 1) for i in ids],
        labels=[(i, 1) for i in ids],
    )


def _ids(store: ObservationStore) -> set[str]:
    with store.engine.connect() as db:
        return set(db.execute(sa.select(observations_table.c.request_id)).scalars())


def _retrain(threshold: int, labelled: int) -> tuple[str, bytes]:
    return "retrain", messages.retrain("every_n_labelled", labelled, threshold=threshold)


def test_a_duration_removes_only_rows_recorded_before_it(store: ObservationStore) -> None:
    store.record(_labelled("old", 30), now=NOW - 10 * DAY)
    store.record(ObservationBatch(labels=[("old-pending", 1)]), now=NOW - 9 * DAY)
    store.record(_labelled("kept", 20), now=NOW - 2 * DAY)
    store.record(ObservationBatch(labels=[("new-pending", 0)]), now=NOW - DAY)
    # a request older than the bound whose label comes now: its row is as old as its request
    store.record(ObservationBatch(labels=[("old0", 0)]), now=NOW)
    counts = (store.count(), store.count(labelled=True))

    store.retain(WEEK, now=NOW)

    assert _ids(store) == {f"kept{i}" for i in range(20)} | {"new-pending"}
    assert store.pending_labels() == 1
    assert (store.count(), store.count(labelled=True)) == counts == (50, 50)
    assert len(store.labelled_frame()) == 20 and len(store.recent_frame(100)) == 20
    # the pending label joins its request when it comes, as before retention
    store.record(ObservationBatch(requests=[("new-pending", messages.request("new-pending", {}))]))
    assert store.get("new-pending")["label"] == 0 and store.pending_labels() == 0
    assert store.retain(WEEK, now=NOW).rows == 0  # nothing older left: a pass changes nothing


def test_a_row_count_keeps_the_newest_rows(store: ObservationStore) -> None:
    for day in (3, 2, 1, 0):
        store.record(_labelled(f"d{day}-", 10), now=NOW - day * DAY)
    store.retain(Retention(rows=20), now=NOW)
    assert _ids(store) == {f"d{day}-{i}" for day in (1, 0) for i in range(10)}
    assert store.count(labelled=True) == 40
    store.retain(Retention(seconds=0.5 * DAY, rows=20), now=NOW)  # either bound removes
    assert _ids(store) == {f"d0-{i}" for i in range(10)}


def test_the_retrain_cadence_neither_fires_again_nor_stalls(store: ObservationStore) -> None:
    def record(batch: ObservationBatch, at: float) -> list[int]:
        return store.record(batch, every=10, command=_retrain, now=at).thresholds

    assert record(_labelled("a", 25), NOW - 10 * DAY) == [10, 20]
    store.retain(WEEK, now=NOW)
    assert store.count(labelled=True) == 25 and store.retrain_mark() == 2
    assert record(_labelled("b", 4), NOW) == []
    assert record(_labelled("c", 1), NOW) == [30]
    store.retain(Retention(rows=1), now=NOW + DAY)
    assert record(_labelled("d", 10), NOW + DAY) == [40]
    with store.sending() as unsent:
        assert [m.key for m in unsent] == [b"10", b"20", b"30", b"40"]


def test_writers_keep_writing_while_retention_runs(store_url: str) -> None:
    """A writer records batch after batch while another connection removes 12,000 old rows
    (several delete transactions on SQLite, partitions on PostgreSQL): every batch goes in."""
    setup = ObservationStore(store_url, partition_seconds=int(DAY))
    for day in range(12):
        setup.record(_labelled(f"old{day}-", 1000), now=NOW - (20 - day) * DAY)
    setup.close()
    writer, retainer = ObservationStore(store_url), ObservationStore(store_url)
    done = threading.Event()
    written, errors = [], []

    def write() -> None:
        try:
            while not done.is_set() or len(written) < 5:
                batch = _labelled(f"new{len(written)}-", 20)
                writer.record(batch)
                written.append(len(batch.requests))
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        removed = retainer.retain(WEEK)
    finally:
        done.set()
        thread.join(60)
    assert not errors and len(written) >= 5
    assert removed.rows == 12_000 or len(removed.partitions) >= 12
    assert _ids(writer) == {f"new{b}-{i}" for b in range(len(written)) for i in range(20)}
    assert writer.count(labelled=True) == 12_000 + 20 * len(written)
    writer.close()
    retainer.close()


def test_size_is_the_rows_held_and_their_bytes(store: ObservationStore) -> None:
    store.record(_labelled("s", 10), now=NOW - 10 * DAY)
    store.record(_labelled("t", 5))
    rows, size = store.size()
    assert rows == 15 and size > 0
    store.retain(WEEK)
    assert store.size()[0] == 5


# -- PostgreSQL only: partitions, indexes, a table made before partitioning --------------------
@pytest.fixture
def pg_store(postgres_schema_url: str) -> Iterator[ObservationStore]:
    store = ObservationStore(postgres_schema_url, partition_seconds=int(DAY))
    yield store
    store.close()


def _partitions(store: ObservationStore) -> list[_retention.Partition]:
    with store.engine.connect() as db:
        return _retention.list_partitions(db, "observations")


def test_postgres_partitions_by_day_are_made_as_rows_come_and_dropped_whole(
    pg_store: ObservationStore,
) -> None:
    assert pg_store.partitions is not None and _partitions(pg_store) == []
    pg_store.record(_labelled("old", 3), now=NOW - 10 * DAY)
    pg_store.record(_labelled("new", 3), now=NOW)
    made = _partitions(pg_store)
    assert all(p.hi - p.lo == DAY for p in made)
    assert any(p.lo <= NOW - 10 * DAY < p.hi for p in made)
    assert any(p.lo <= NOW + DAY / 2 < p.hi for p in made)  # the next one, made ahead
    with pg_store.engine.connect() as db:  # nothing in the DEFAULT partition
        assert db.exec_driver_sql("SELECT count(*) FROM observations_default").scalar() == 0
    retained = pg_store.retain(WEEK, now=NOW)
    assert retained.partitions == [p.name for p in made if p.hi <= NOW - 7 * DAY]
    assert _ids(pg_store) == {f"new{i}" for i in range(3)}


def test_postgres_rows_no_partition_covers_go_to_the_default_and_are_retained(
    pg_store: ObservationStore,
) -> None:
    with pg_store.engine.begin() as db:  # as if a partition's creation had timed out
        db.execute(
            observations_table.insert(),
            [{"request_id": "stray", "recorded_at": NOW - 30 * DAY, "label": 1}],
        )
        assert db.exec_driver_sql("SELECT count(*) FROM observations_default").scalar() == 1
    pg_store.record(_labelled("new", 2), now=NOW)
    assert pg_store.retain(WEEK, now=NOW).rows == 1
    assert _ids(pg_store) == {"new0", "new1"}


def _plan(store: ObservationStore, query: sa.Select) -> str:
    with store.engine.connect() as db:
        db.exec_driver_sql("ANALYZE observations")
        compiled = query.compile(dialect=db.dialect, compile_kwargs={"literal_binds": True})
        return "\n".join(db.exec_driver_sql(f"EXPLAIN {compiled}").scalars())


def test_postgres_window_queries_read_indexes_not_the_whole_table(
    pg_store: ObservationStore,
) -> None:
    """The training window, the monitor's recent rows and labelled outcomes, on 30 days of
    2,000 rows each: index scans of each partition (no sequential scan)."""
    for day in range(30):
        pg_store.record(_labelled(f"d{day}-", 2000), now=NOW - (29 - day) * DAY)
    assert len(_partitions(pg_store)) >= 30
    from streamfit.stores.observations import _latest_labelled_query, _recent_query

    for query in (
        _latest_labelled_query(["request_id", "data", "label"], 1000),
        _latest_labelled_query(["label", "probability"], 1000, predicted=True),
        _recent_query(1000),
    ):
        plan = _plan(pg_store, query)
        assert "Seq Scan" not in plan and "Index Scan" in plan, plan


def test_postgres_a_table_made_before_partitioning_keeps_working(postgres_schema_url: str) -> None:
    """An unpartitioned observation table (streamfit before retention) is kept as it is: the
    store upserts into it and retention deletes its old rows in small batches."""
    engine = sa.create_engine(postgres_schema_url)
    old = sa.MetaData()
    sa.Table(
        "observations",
        old,
        *(c._copy() for c in observations_table.columns if c.name != "recorded_at"),
    )
    old.create_all(engine)
    engine.dispose()
    store = ObservationStore(postgres_schema_url)
    assert store.partitions is None
    store.record(_labelled("old", 10), now=NOW - 10 * DAY)
    store.record(_labelled("new", 10), now=NOW)
    store.record(_labelled("new", 10), now=NOW)  # redelivered: upserts, no duplicate
    assert store.retain(WEEK, now=NOW).rows == 10
    assert _ids(store) == {f"new{i}" for i in range(10)}
    assert store.size()[0] == 10 and store.size()[1] > 0
    assert store.count(labelled=True) == 20
    store.close()

"""The observation store's contract, once per back end: SQLite and the real PostgreSQL."""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
from collections.abc import Iterator

import orjson
import pytest
import sqlalchemy as sa

from streamfit import messages
from streamfit.stores import ObservationBatch, ObservationStore, StoreError
from streamfit.stores.observations import (
    LABELLED_COUNT,
    OBSERVED_COUNT,
    marks_table,
    observations_table,
)

PARTS = ("request", "prediction", "label")


@pytest.fixture
def store(store_url: str) -> Iterator[ObservationStore]:
    store = ObservationStore(store_url)
    yield store
    store.close()


def _request(request_id: str, age: int = 30) -> bytes:
    return messages.request(request_id, {"age": age, "workclass": "Private"})


def _part(kind: str, request_id: str, age: int = 30) -> ObservationBatch:
    if kind == "request":
        return ObservationBatch(requests=[(request_id, _request(request_id, age))])
    if kind == "prediction":
        return ObservationBatch(predictions=[(request_id, 0.25, 3)])
    return ObservationBatch(labels=[(request_id, 1)])


def _content(row: dict | None) -> tuple:
    assert row is not None
    return tuple(row[k] for k in ("request_id", "data", "probability", "model_version", "label"))


def _retrain(threshold: int, labelled: int) -> tuple[str, bytes]:
    return "retrain", messages.retrain("every_n_labelled", labelled, threshold=threshold)


def test_any_arrival_order_gives_the_same_row(store: ObservationStore) -> None:
    for number, order in enumerate(itertools.permutations(PARTS)):
        request_id = f"r{number}"
        for kind in order:
            store.record(_part(kind, request_id))
        assert _content(store.get(request_id)) == (request_id, _request(request_id), 0.25, 3, 1)
    assert store.count() == store.count(labelled=True) == 6
    assert store.pending_labels() == 0


def test_parts_of_one_request_in_one_batch_in_any_order(store: ObservationStore) -> None:
    batch = ObservationBatch(
        labels=[("a", 0)], predictions=[("a", 0.5, 1)], requests=[("a", _request("a"))]
    )
    assert store.record(batch).labelled == 1
    assert _content(store.get("a")) == ("a", _request("a"), 0.5, 1, 0)


def test_redelivered_messages_change_nothing_and_count_nothing_twice(
    store: ObservationStore,
) -> None:
    for kind in PARTS:
        store.record(_part(kind, "r", age=30))
    before = store.get("r")
    # The same messages again, and conflicting ones: the first value of each part stays.
    again = ObservationBatch(
        requests=[("r", _request("r", age=99)), ("r", _request("r"))],
        predictions=[("r", 0.9, 7)],
        labels=[("r", 0), ("r", 1)],
    )
    assert store.record(again).labelled == 1
    assert store.get("r") == before
    assert (store.count(), store.count(labelled=True), store.pending_labels()) == (1, 1, 0)
    # Within one batch the first value wins too.
    store.record(ObservationBatch(labels=[("n", 0), ("n", 1)], requests=[("n", _request("n"))]))
    assert store.get("n")["label"] == 0


def test_labels_for_unseen_requests_stay_pending_until_the_request_comes(
    store: ObservationStore,
) -> None:
    store.record(ObservationBatch(labels=[("early", 1), ("never", 0)]))
    assert (store.count(), store.count(labelled=True), store.pending_labels()) == (0, 0, 2)
    assert store.labelled_frame().empty and store.recent_frame(10).empty
    store.record(ObservationBatch(requests=[("early", _request("early"))]))
    assert (store.count(), store.count(labelled=True), store.pending_labels()) == (1, 1, 1)
    assert store.labelled_frame()["request_id"].tolist() == ["early"]


def test_counts_distinguish_requests_labelled_and_pending(store: ObservationStore) -> None:
    store.record(
        ObservationBatch(
            requests=[(f"q{i}", _request(f"q{i}", 20 + i)) for i in range(5)],
            predictions=[(f"q{i}", 0.1 * i, 1) for i in range(7)],  # two never requested
            labels=[("q0", 1), ("q1", 0), ("x", 1)],
        )
    )
    assert store.count() == 5
    assert store.count(labelled=True) == 2
    assert store.pending_labels() == 1


def test_the_kept_labelled_count_equals_a_fresh_count_whatever_arrives(
    store: ObservationStore,
) -> None:
    """Random batches of parts of 40 requests, redeliveries and conflicting values included:
    after each, the counts record() keeps (never recounted) equal counting the table."""
    rng = random.Random(7)
    for _ in range(60):
        batch = ObservationBatch()
        for _ in range(rng.randint(0, 12)):
            request_id, kind = f"k{rng.randrange(40)}", rng.choice(PARTS)
            part = _part(kind, request_id, age=rng.randint(17, 90))
            batch.requests += part.requests
            batch.predictions += part.predictions
            batch.labels += [(i, rng.randint(0, 1)) for i, _ in part.labels]
        labelled = store.record(batch).labelled
        with store.engine.connect() as db:  # counted afresh, as the store itself never does
            observed, counted = db.execute(
                sa.select(
                    sa.func.count(observations_table.c.data),
                    sa.func.count(observations_table.c.label).filter(
                        observations_table.c.data.is_not(None)
                    ),
                )
            ).one()
        assert (store.count(), store.count(labelled=True)) == (observed, counted)
        assert labelled == counted


KEPT_COUNTS = (OBSERVED_COUNT, LABELLED_COUNT)


def test_a_store_written_before_the_kept_counts_counts_its_rows_once(store_url: str) -> None:
    store = ObservationStore(store_url)
    store.record(ObservationBatch(requests=[("a", _request("a"))], labels=[("a", 1), ("b", 0)]))
    with store.engine.begin() as db:  # as a store of the previous release left it
        db.execute(marks_table.delete().where(marks_table.c.name.in_(KEPT_COUNTS)))
    store.close()
    reopened = ObservationStore(store_url)
    assert reopened.record(ObservationBatch(requests=[("b", _request("b"))])).labelled == 2
    assert reopened.count() == 2
    reopened.close()


def test_outcomes_are_the_labelled_rows_whose_prediction_is_recorded(
    store: ObservationStore,
) -> None:
    """A label and its request can be recorded before the prediction (three topics, any
    order): realised metrics must not see a row without its probability."""
    store.record(
        ObservationBatch(
            requests=[(i, _request(i)) for i in ("p", "q")],
            predictions=[("p", 0.8, 2)],
            labels=[("p", 1), ("q", 0)],
        )
    )
    outcomes = store.labelled_outcomes()
    assert outcomes.to_dict("records") == [{"label": 1, "probability": 0.8, "model_version": 2}]
    assert store.count(labelled=True) == 2  # q is labelled all the same
    store.record(ObservationBatch(predictions=[("q", 0.3, 2)]))
    assert store.labelled_outcomes()["probability"].tolist() == [0.8, 0.3]


def test_frames_read_the_raw_requests_oldest_first(store: ObservationStore) -> None:
    for i in range(6):
        store.record(
            ObservationBatch(
                requests=[(f"f{i}", _request(f"f{i}", 30 + i))],
                predictions=[(f"f{i}", i / 10, 2)],
                labels=[(f"f{i}", i % 2)] if i < 4 else [],
            ),
            now=1000.0 + i,
        )
    labelled = store.labelled_frame()
    assert labelled["request_id"].tolist() == ["f0", "f1", "f2", "f3"]
    assert labelled["age"].tolist() == [30.0, 31.0, 32.0, 33.0]
    assert labelled["workclass"].tolist() == ["Private"] * 4
    assert labelled["label"].tolist() == [0, 1, 0, 1]
    assert store.labelled_frame(limit=2)["request_id"].tolist() == ["f2", "f3"]
    outcomes = store.labelled_outcomes(limit=3)
    assert outcomes.columns.tolist() == ["label", "probability", "model_version"]
    assert outcomes.values.tolist() == [[1, 0.1, 2], [0, 0.2, 2], [1, 0.3, 2]]
    recent = store.recent_frame(3)
    assert recent["request_id"].tolist() == ["f3", "f4", "f5"]
    assert recent["label"].isna().tolist() == [False, True, True]
    # A request that arrives after its label counts as recent from its own arrival.
    store.record(ObservationBatch(labels=[("late", 1)]), now=1005.5)
    store.record(ObservationBatch(requests=[("late", _request("late", 50))]), now=1010.0)
    assert store.recent_frame(2)["request_id"].tolist() == ["f5", "late"]


def test_a_retrain_is_queued_once_per_threshold(store: ObservationStore) -> None:
    thresholds = []
    for i in range(7):
        store.record(_part("request", f"t{i}"), every=3, command=_retrain)
        outcome = store.record(_part("label", f"t{i}"), every=3, command=_retrain)
        thresholds += outcome.thresholds
        # Redelivery: nothing new labelled, nothing queued.
        assert store.record(_part("label", f"t{i}"), every=3, command=_retrain).thresholds == []
    assert thresholds == [3, 6] and store.retrain_mark() == 2
    # A batch crossing two thresholds queues both.
    batch = ObservationBatch(
        requests=[(f"u{i}", _request(f"u{i}")) for i in range(6)],
        labels=[(f"u{i}", 0) for i in range(6)],
    )
    assert store.record(batch, every=3, command=_retrain).thresholds == [9, 12]
    with store.sending() as unsent:
        sent = [orjson.loads(m.value) for m in unsent]
        assert {m.topic for m in unsent} == {"retrain"}
    assert [m["threshold"] for m in sent] == [3, 6, 9, 12]
    assert [m["labelled"] for m in sent] == [3, 6, 13, 13]
    assert store.unsent() == 0
    with store.sending() as unsent:
        assert unsent == []


def test_outbox_messages_stay_unsent_when_delivery_fails(store: ObservationStore) -> None:
    store.record(
        ObservationBatch(requests=[("a", _request("a"))], labels=[("a", 1)]),
        every=1,
        command=_retrain,
    )
    with pytest.raises(RuntimeError, match="broker down"), store.sending() as unsent:
        assert len(unsent) == 1
        raise RuntimeError("broker down")
    assert store.unsent() == 1
    with store.sending() as unsent:
        assert [orjson.loads(m.value)["threshold"] for m in unsent] == [1]
    assert store.unsent() == 0


def test_concurrent_writers_count_every_threshold_exactly_once(store_url: str) -> None:
    """Four writers (own engines, as separate recorders) label 120 requests in overlapping
    batches, requests and labels split between them: thresholds 10..120, each queued once."""
    stores = [ObservationStore(store_url) for _ in range(4)]
    queued: list[int] = []
    lock = threading.Lock()

    def write(number: int, store: ObservationStore) -> None:
        for start in range(0, 120, 8):
            ids = [f"c{i}" for i in range(start, start + 8)]
            if number % 2:
                batch = ObservationBatch(requests=[(i, _request(i)) for i in ids])
            else:
                batch = ObservationBatch(labels=[(i, 1) for i in ids])
            outcome = store.record(batch, every=10, command=_retrain)
            with lock:
                queued.extend(outcome.thresholds)

    _concurrently(write, stores)
    assert sorted(queued) == list(range(10, 121, 10))
    assert stores[0].count(labelled=True) == 120 and stores[0].retrain_mark() == 12
    for store in stores:
        store.close()


# -- the batched path: a poll's worth of parts staged (COPY / executemany) and merged at once ---
_COLUMNS = ("data", "probability", "model_version", "label", "shadow_version", "shadow_probability")


def _arrivals(rng: random.Random, requests: int) -> list[tuple[str, str, tuple]]:
    """Every part of ``requests`` requests, shuffled, about a third of them delivered again
    (with other values: the first must win), as (kind, request_id, value)."""
    parts = []
    for i in range(requests):
        request_id = f"b{i}"
        parts += [
            ("request", request_id, (_request(request_id, 17 + i % 70),)),
            ("prediction", request_id, (i / requests, 1 + i % 3)),
            ("label", request_id, (i % 2,)),
        ]
        if i % 4 == 0:
            parts.append(("shadow", request_id, (9, 1 - i / requests)))
    again = [
        (kind, request_id, (_request(request_id, 99),) if kind == "request" else value)
        for kind, request_id, value in rng.sample(parts, len(parts) // 3)
    ]
    again = [(k, r, (1 - v[0],) if k == "label" else v) for k, r, v in again]
    arrivals = parts + again
    rng.shuffle(arrivals)
    return arrivals


def _batch(arrivals: list[tuple[str, str, tuple]]) -> ObservationBatch:
    batch = ObservationBatch()
    for kind, request_id, value in arrivals:
        rows = {
            "request": batch.requests,
            "prediction": batch.predictions,
            "label": batch.labels,
            "shadow": batch.shadows,
        }[kind]
        rows.append((request_id, *value))
    return batch


def _expected(arrivals: list[tuple[str, str, tuple]]) -> dict[str, tuple]:
    """Each request's row as the first arrival of each of its parts made it."""
    rows: dict[str, dict[str, object]] = {}
    names = {
        "request": ("data",),
        "prediction": ("probability", "model_version"),
        "label": ("label",),
        "shadow": ("shadow_version", "shadow_probability"),
    }
    for kind, request_id, value in arrivals:
        row = rows.setdefault(request_id, dict.fromkeys(_COLUMNS))
        if row[names[kind][0]] is None:
            row.update(zip(names[kind], value, strict=True))
    return {request_id: tuple(row[c] for c in _COLUMNS) for request_id, row in rows.items()}


def _table(store: ObservationStore) -> dict[str, tuple]:
    columns = [observations_table.c[c] for c in _COLUMNS]
    with store.engine.connect() as db:
        found = db.execute(sa.select(observations_table.c.request_id, *columns)).all()
    return {row[0]: tuple(row[1:]) for row in found}


@pytest.mark.parametrize("seed", [1, 2])
def test_batches_of_any_size_and_order_keep_the_first_arrival_of_every_part(
    store: ObservationStore, seed: int
) -> None:
    """600 requests' parts (a third redelivered with other values), shuffled and cut into
    batches of 1 to 2,000 parts: every row is what the first arrival of each part made it,
    and the kept counts and retrain thresholds are exact."""
    rng = random.Random(seed)
    arrivals = _arrivals(rng, 600)
    thresholds: list[int] = []
    start = 0
    while start < len(arrivals):
        size = rng.choice([1, 7, 300, 2000])
        batch = _batch(arrivals[start : start + size])
        thresholds += store.record(batch, every=50, command=_retrain).thresholds
        start += size
    assert _table(store) == _expected(arrivals)
    assert (store.count(), store.count(labelled=True), store.pending_labels()) == (600, 600, 0)
    assert thresholds == list(range(50, 601, 50))


def test_a_batch_delivered_again_whole_changes_no_row_and_counts_nothing(
    store: ObservationStore,
) -> None:
    """The recorder killed after its commit, before the offsets': the whole poll comes again."""
    rng = random.Random(3)
    batch = _batch(_arrivals(rng, 400))
    first = store.record(batch, every=100, command=_retrain, now=10.0)
    with store.engine.connect() as db:
        before = db.execute(sa.select(observations_table).order_by("seq")).all()
    again = store.record(batch, every=100, command=_retrain, now=20.0)
    with store.engine.connect() as db:
        assert db.execute(sa.select(observations_table).order_by("seq")).all() == before
    assert (first.labelled, first.thresholds) == (400, [100, 200, 300, 400])
    assert (again.labelled, again.thresholds) == (400, [])
    assert store.unsent() == 4


def test_a_batch_the_database_refuses_leaves_nothing_behind_for_the_next(
    store: ObservationStore,
) -> None:
    """A refused batch rolls back whole, its staged rows too: the next batch merges its own."""
    good = [(f"g{i}", _request(f"g{i}")) for i in range(500)]
    refused = ObservationBatch(requests=good, predictions=[("g1", 0.5, 2**63)])
    with pytest.raises(StoreError):
        store.record(refused, every=10, command=_retrain)
    assert (store.count(), store.unsent(), _table(store)) == (0, 0, {})
    outcome = store.record(ObservationBatch(requests=[("n", _request("n"))], labels=[("n", 1)]))
    assert (outcome.labelled, store.count()) == (1, 1)
    assert list(_table(store)) == ["n"]


def test_concurrent_writers_of_large_overlapping_batches_count_exactly(store_url: str) -> None:
    """Two writers (as two recorders of one group) record the parts of the same 1,200 requests
    in batches of 400, one the requests and predictions, the other the labels and the
    predictions again: every row complete, each threshold queued once."""
    stores = [ObservationStore(store_url) for _ in range(2)]
    queued: list[int] = []
    lock = threading.Lock()
    ids = [f"w{i}" for i in range(1200)]

    def write(number: int, store: ObservationStore) -> None:
        for start in range(0, len(ids), 400):
            chunk = ids[start : start + 400]
            batch = ObservationBatch(predictions=[(i, 0.5, 1) for i in chunk])
            if number == 0:
                batch.requests = [(i, _request(i)) for i in chunk]
            else:
                batch.labels = [(i, 1) for i in reversed(chunk)]
            outcome = store.record(batch, every=100, command=_retrain)
            with lock:
                queued.extend(outcome.thresholds)

    _concurrently(write, stores)
    assert sorted(queued) == list(range(100, 1201, 100))
    assert (stores[0].count(), stores[0].count(labelled=True)) == (1200, 1200)
    assert all(row[2] == 1 for row in _table(stores[0]).values())  # model_version
    for store in stores:
        store.close()


def test_a_value_the_database_refuses_is_a_store_error(store: ObservationStore) -> None:
    with pytest.raises(StoreError) as raised:
        store.record(ObservationBatch(predictions=[("big", 0.5, 2**63)]))
    assert "\n" not in str(raised.value) and str(raised.value)
    assert store.get("big") is None  # the transaction rolled back


def test_sqlite_file_of_the_previous_schema_is_migrated(tmp_path) -> None:
    path = tmp_path / "observations.db"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE observations (request_id TEXT PRIMARY KEY, received_at REAL NOT NULL,
               data BLOB NOT NULL, probability REAL, model_version INTEGER, label INTEGER,
               labelled_at REAL);
           CREATE INDEX observations_labelled ON observations (labelled_at)
               WHERE label IS NOT NULL;"""
    )
    db.execute("INSERT INTO observations VALUES ('old', 1.0, ?, 0.5, 1, 1, 2.0)", (_request("o"),))
    db.commit()
    db.close()
    store = ObservationStore(f"sqlite:///{path}")
    assert _content(store.get("old")) == ("old", _request("o"), 0.5, 1, 1)
    store.record(ObservationBatch(labels=[("pending", 0)]))  # data may now be empty
    assert (store.count(labelled=True), store.pending_labels()) == (1, 1)


def test_a_table_made_before_shadow_scoring_and_retention_gains_their_columns(
    store_url: str,
) -> None:
    """An observation table of an earlier version (unpartitioned, without the two shadow
    columns and recorded_at) keeps its rows and gets the columns when a store opens it."""
    engine = sa.create_engine(store_url)
    with engine.begin() as db:
        observations_table.create(db)
        for name in ("shadow_version", "shadow_probability", "recorded_at"):
            db.exec_driver_sql(f"ALTER TABLE observations DROP COLUMN {name}")
        db.execute(observations_table.insert().values(request_id="old", data=_request("old")))
    engine.dispose()
    store = ObservationStore(store_url)
    store.record(ObservationBatch(predictions=[("old", 0.5, 1)], shadows=[("old", 2, 0.25)]))
    row = store.get("old")
    assert row is not None and (row["shadow_version"], row["shadow_probability"]) == (2, 0.25)
    assert row["data"] == _request("old") and store.count() == 1
    store.close()


def test_the_module_example_runs() -> None:
    import doctest

    from streamfit.stores import observations

    result = doctest.testmod(observations)
    assert result.attempted > 0 and result.failed == 0


def _concurrently(write, stores: list) -> None:
    """``write(number, store)`` for every store at once, each in a thread of its own."""
    threads = [threading.Thread(target=write, args=(n, s)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

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

    threads = [threading.Thread(target=write, args=(n, s)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(queued) == list(range(10, 121, 10))
    assert stores[0].count(labelled=True) == 120 and stores[0].retrain_mark() == 12
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


def test_the_module_example_runs() -> None:
    import doctest

    from streamfit.stores import observations

    result = doctest.testmod(observations)
    assert result.attempted > 0 and result.failed == 0

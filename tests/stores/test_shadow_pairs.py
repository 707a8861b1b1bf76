"""Shadow scores in the observation store, once per back end: stored, joined, paired in order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from streamfit import messages
from streamfit.stores import ObservationBatch, ObservationStore


@pytest.fixture
def store(store_url: str) -> Iterator[ObservationStore]:
    store = ObservationStore(store_url)
    yield store
    store.close()


def _request(request_id: str) -> tuple[str, bytes]:
    return request_id, messages.request(request_id, {"age": 30})


def test_pairs_come_in_the_order_they_were_completed(store: ObservationStore) -> None:
    # r0: label first, prediction later; r1: all at once; r2: another challenger; r3: no label
    store.record(ObservationBatch(requests=[_request("r0")], labels=[("r0", 1)]), now=1.0)
    store.record(
        ObservationBatch(
            requests=[_request("r1"), _request("r2"), _request("r3")],
            predictions=[("r1", 0.7, 1), ("r2", 0.6, 1), ("r3", 0.5, 1)],
            shadows=[("r1", 2, 0.8), ("r2", 3, 0.4), ("r3", 2, 0.5)],
            labels=[("r1", 0), ("r2", 1)],
        ),
        now=2.0,
    )
    store.record(ObservationBatch(predictions=[("r0", 0.2, 1)], shadows=[("r0", 2, 0.3)]), now=3.0)
    pairs = store.shadow_pairs(champion=1, challenger=2)
    assert pairs.to_dict("records") == [
        {"label": 0, "probability": 0.7, "shadow_probability": 0.8, "canary": False},
        {"label": 1, "probability": 0.2, "shadow_probability": 0.3, "canary": False},
    ]
    assert len(store.shadow_pairs(champion=1, challenger=3)) == 1
    assert len(store.shadow_pairs(champion=2, challenger=2)) == 0
    assert len(store.shadow_pairs(champion=1, challenger=2, limit=1)) == 1
    # labelled or not (r3 has no label), the latest first
    scores = store.shadow_scores(champion=1, challenger=2, limit=10)
    assert scores.values.tolist() == [[0.5, 0.5], [0.7, 0.8], [0.2, 0.3]]
    assert store.shadow_scores(champion=1, challenger=2, limit=1).values.tolist() == [[0.5, 0.5]]


def test_canary_answers_pair_the_other_way_round(store: ObservationStore) -> None:
    # Canary mode: c1 answered by the challenger v2 (the champion v1's score in shadow), c2 by
    # the champion; c3 answered by the challenger but not labelled yet.
    store.record(
        ObservationBatch(
            requests=[_request("c1"), _request("c2"), _request("c3")],
            predictions=[("c1", 0.9, 2), ("c2", 0.4, 1), ("c3", 0.3, 2)],
            shadows=[("c1", 1, 0.6), ("c2", 2, 0.1), ("c3", 1, 0.5)],
            labels=[("c1", 1), ("c2", 0)],
        ),
        now=1.0,
    )
    pairs = store.shadow_pairs(champion=1, challenger=2)
    assert pairs.to_dict("records") == [
        {"label": 1, "probability": 0.6, "shadow_probability": 0.9, "canary": True},
        {"label": 0, "probability": 0.4, "shadow_probability": 0.1, "canary": False},
    ]
    assert sorted(store.canary_answers(champion=1, challenger=2).tolist()) == [0.3, 0.9]
    assert store.canary_answers(champion=2, challenger=1).tolist() == [0.4]


def test_a_redelivered_shadow_score_changes_nothing(store: ObservationStore) -> None:
    store.record(ObservationBatch(predictions=[("r", 0.5, 1)], shadows=[("r", 2, 0.25)]))
    store.record(ObservationBatch(predictions=[("r", 0.9, 1)], shadows=[("r", 4, 0.75)]))
    row = store.get("r")
    assert row is not None
    assert (row["shadow_version"], row["shadow_probability"]) == (2, 0.25)


def test_a_table_from_before_shadow_scoring_gets_its_columns(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.exec_driver_sql(
            "CREATE TABLE observations (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT "
            "NOT NULL UNIQUE, data BLOB, received_at FLOAT, probability FLOAT, model_version "
            "BIGINT, predicted_at FLOAT, label SMALLINT, labelled_at FLOAT)"
        )
        db.exec_driver_sql(
            "INSERT INTO observations (request_id, probability, model_version) "
            "VALUES ('old', 0.5, 1)"
        )
    engine.dispose()
    store = ObservationStore(url)
    try:
        store.record(ObservationBatch(shadows=[("old", 2, 0.4)]))
        row = store.get("old")
        assert row is not None and row["probability"] == 0.5 and row["shadow_version"] == 2
    finally:
        store.close()

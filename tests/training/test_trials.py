"""The trial store on every back end: SQLite and the real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa

from streamfit.config import Settings
from streamfit.models.bundle import ModelStore
from streamfit.tracking import NullTracker
from streamfit.training.round import run_round
from streamfit.training.space import DEFAULT_SPACE, params_key
from streamfit.training.trials import TrialStore, format_leaderboard, rounds_table, trials_table


@pytest.fixture
def trials(store_url: str) -> Iterator[TrialStore]:
    store = TrialStore(store_url)
    yield store
    store.close()


def _round(store: TrialStore, optimizer: str = "hyperopt", space: str = "s1") -> int:
    return store.begin_round(
        trigger="manual", optimizer=optimizer, data_rows=10, data_hash="d", space_hash=space
    )


def _trial(store: TrialStore, round_id: int, number: int, loss: float | None, **kw) -> int:
    values = {
        "loss_std": 0.01,
        "rounds": 40,
        "duration_s": 0.5,
        "status": "ok",
        "optimizer": "hyperopt",
        "data_rows": 10,
        "data_hash": "d",
        "space_hash": "s1",
    } | kw
    return store.add_trial(round_id, number, {"num_leaves": 8 * (number + 1)}, loss=loss, **values)


def _earlier(store_url: str, old: sa.MetaData, rows: dict[str, dict]) -> tuple[TrialStore, ...]:
    """Tables of an earlier layout (``old``) holding ``rows`` (a row per table name), then two
    stores opened on them at once, as services upgrading together do."""
    engine = sa.create_engine(store_url)
    with engine.begin() as db:
        old.create_all(db)
        for table, row in rows.items():
            db.execute(old.tables[table].insert().values(**row))
    engine.dispose()
    return _opened_together(store_url)


def _opened_together(store_url: str) -> tuple[TrialStore, ...]:
    """Two stores opened on one database at once (their tables created concurrently)."""
    stores: list[TrialStore] = []
    threads = [threading.Thread(target=lambda: stores.append(TrialStore(store_url))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tuple(stores)


OLD_ROUND = dict(
    started=1.0, trigger="initial", optimizer="hyperopt", data_rows=10, data_hash="d",
    space_hash="s1", status="done",
)  # fmt: skip


def test_rounds_and_trials_round_trip(trials: TrialStore) -> None:
    first, second = _round(trials), _round(trials, optimizer="optuna")
    assert (first, second) == (1, 2)
    _trial(trials, first, 0, 0.40)
    _trial(trials, first, 1, None, status="failed")
    trials.finish_round(first, "done", model_version=3, promoted=True, mlflow_run_id="abc")
    rounds = trials.rounds()
    assert [r["status"] for r in rounds] == ["done", "running"]
    assert (rounds[0]["model_version"], rounds[0]["promoted"]) == (3, True)
    assert rounds[0]["finished"] >= rounds[0]["started"]
    stored = trials.trials(first)
    assert [t["params"] for t in stored] == [{"num_leaves": 8}, {"num_leaves": 16}]
    assert [t["status"] for t in stored] == ["ok", "failed"] and stored[0]["warm"] is False


def test_leaderboard_filters_and_orders_by_loss(trials: TrialStore) -> None:
    first, second = _round(trials), _round(trials, optimizer="optuna")
    _trial(trials, first, 0, 0.40)
    _trial(trials, first, 1, 0.30)
    _trial(trials, first, 2, 0.20, status="pruned")
    _trial(trials, second, 0, 0.35, optimizer="optuna")
    assert [t["cv_loss"] for t in trials.leaderboard()] == [0.30, 0.35, 0.40]
    assert [t["cv_loss"] for t in trials.leaderboard(round_id=first)] == [0.30, 0.40]
    assert [t["round_id"] for t in trials.leaderboard(optimizer="optuna")] == [second]
    assert len(trials.leaderboard(limit=1)) == 1
    assert "params of the best" in format_leaderboard(trials.leaderboard())


def test_warm_start_points_are_the_best_distinct_ones_of_the_space(trials: TrialStore) -> None:
    round_id = _round(trials)
    _trial(trials, round_id, 0, 0.30)
    _trial(trials, round_id, 0, 0.31)  # the same params again
    _trial(trials, round_id, 1, 0.20)
    _trial(trials, round_id, 2, 0.10, space_hash="other")
    assert trials.warm_start_points("s1", 5) == [{"num_leaves": 16}, {"num_leaves": 8}]
    assert trials.warm_start_points("s1", 1) == [{"num_leaves": 16}]
    skip = [params_key({"num_leaves": 16})]
    assert trials.warm_start_points("s1", 5, exclude=skip) == [{"num_leaves": 8}]


def test_champion_history_leaves_rolled_back_versions_out(trials: TrialStore) -> None:
    for version in (1, 2, 3):
        trials.record_champion(version, f"v{version}")
    trials.mark_rolled_back(3)
    assert [c["version"] for c in trials.champion_history()] == [1, 2]


def test_the_gate_refusals_are_the_rounds_it_refused_with_their_reason(trials: TrialStore) -> None:
    first, shadowed, refused, failed = (_round(trials) for _ in range(4))
    trials.finish_round(first, "done", model_version=1, promoted=True, gate_reason="first model")
    trials.finish_round(
        shadowed,
        "done",
        model_version=2,
        promoted=False,
        gate_reason="shadowed against v1 on live traffic; gate promoted: holdout ...",
        compared_with=1,
    )
    reason = "refused: its contract breaks v1's producers: column 'x' becomes required (new)"
    trials.finish_round(
        refused, "done", model_version=3, promoted=False, gate_reason=reason, compared_with=1
    )
    trials.finish_round(failed, "failed")
    [row] = trials.refused()
    assert (row["round_id"], row["model_version"], row["compared_with"]) == (refused, 3, 1)
    assert row["gate_reason"] == reason


def test_a_rounds_table_of_an_earlier_version_gets_the_gate_columns(store_url: str) -> None:
    """A trial database made before the store kept the gate's reason: the columns are added
    (by two stores opening it at once), its rounds kept, and a new round's reason recorded."""
    old = sa.MetaData()
    sa.Table(
        "rounds",
        old,
        *(sa.Column(c.name, c.type, primary_key=c.primary_key) for c in rounds_table.columns
          if c.name not in ("gate_reason", "compared_with")),
    )  # fmt: skip
    a, b = _earlier(store_url, old, {"rounds": OLD_ROUND | dict(model_version=1, promoted=True)})
    [kept] = a.rounds()
    assert (kept["model_version"], kept["gate_reason"], kept["compared_with"]) == (1, None, None)
    later = _round(a)
    a.finish_round(
        later, "done", model_version=2, promoted=False, gate_reason="refused: worse",
        compared_with=1,
    )  # fmt: skip
    assert [(r["round_id"], r["gate_reason"]) for r in b.refused()] == [(later, "refused: worse")]
    a.close()
    b.close()


def test_a_trials_table_of_an_earlier_version_gets_the_task_neutral_loss_columns(
    store_url: str,
) -> None:
    """A trial database made when the CV loss columns were ``cv_logloss``/``cv_logloss_std``
    (whatever the task): they are renamed ``cv_loss``/``cv_loss_std`` (by two stores opening it
    at once), its trials kept, and the leaderboard and warm starts read them with new ones."""
    old_names = {"cv_loss": "cv_logloss", "cv_loss_std": "cv_logloss_std"}
    old = sa.MetaData()
    for table in (rounds_table, trials_table):
        sa.Table(
            table.name,
            old,
            *(sa.Column(old_names.get(c.name, c.name), c.type, primary_key=c.primary_key)
              for c in table.columns),
        )  # fmt: skip
    trial = dict(
        round_id=1, number=0, optimizer="hyperopt", params='{"num_leaves": 8}',
        params_key=params_key({"num_leaves": 8}), cv_logloss=0.30, cv_logloss_std=0.02,
        rounds=40, duration_s=0.5, status="ok", warm=False, data_rows=10, data_hash="d",
        space_hash="s1", created=1.0,
    )  # fmt: skip
    a, b = _earlier(store_url, old, {"rounds": OLD_ROUND, "trials": trial})
    [kept] = a.trials()
    assert (kept["cv_loss"], kept["cv_loss_std"], kept["params"]) == (0.30, 0.02, {"num_leaves": 8})
    assert "cv_logloss" not in kept
    _trial(b, _round(b), 1, 0.20)
    assert [t["cv_loss"] for t in a.leaderboard()] == [0.20, 0.30]
    assert a.warm_start_points("s1", 5) == [{"num_leaves": 16}, {"num_leaves": 8}]
    a.close()
    b.close()
    TrialStore(store_url).close()  # opening an upgraded database again changes nothing


def test_two_stores_on_one_database_see_each_others_rows(store_url: str) -> None:
    """Trainers on several machines share one trial database; tables created concurrently."""
    a, b = _opened_together(store_url)
    _trial(a, _round(a), 0, 0.25)
    assert [t["cv_loss"] for t in b.leaderboard()] == [0.25]
    a.close()
    b.close()


def test_a_round_records_its_trials_in_the_configured_store(
    store_url: str, tmp_path, adult_small: pd.DataFrame
) -> None:
    settings = Settings(data_dir=tmp_path / "data", seed=3, trials=store_url)
    outcome = run_round(
        settings, trigger="initial", max_evals=2, tracker=NullTracker(), base_data=adult_small
    )
    store = TrialStore(store_url)
    assert [t["round_id"] for t in store.trials()] == [outcome.round_id] * 2
    assert store.rounds()[0]["model_version"] == outcome.version
    assert store.rounds()[0]["gate_reason"] == outcome.reason == "first model"
    assert ModelStore(settings.models_dir).champion() == outcome.version
    assert set(store.trials()[0]["params"]) == set(DEFAULT_SPACE.names)
    store.close()


@pytest.mark.postgres
def test_trials_default_to_the_observation_database_server(
    postgres_schema_url: str, tmp_path, adult_small: pd.DataFrame
) -> None:
    """A trainer given a database server for observations keeps its trials there too: no SQLite
    file on its own disk, and a standby trainer on another machine warm-starts from them."""
    from streamfit.stores import ObservationStore

    settings = Settings(data_dir=tmp_path / "data", seed=3, store=postgres_schema_url)
    observations = ObservationStore(settings.store_url)  # both families of tables, one schema
    outcome = run_round(
        settings, trigger="initial", max_evals=2, tracker=NullTracker(), base_data=adult_small
    )
    store = TrialStore(postgres_schema_url)
    assert [t["round_id"] for t in store.trials()] == [outcome.round_id] * 2
    assert not (tmp_path / "data" / "trials.db").exists()
    assert observations.count() == 0
    store.close()
    observations.close()
    # an SQLite observation store (one machine) keeps the trials in the data directory
    local = Settings(data_dir=tmp_path / "one", store=f"sqlite:///{tmp_path / 'obs.db'}")
    assert local.trials_url == f"sqlite:///{(tmp_path / 'one').resolve() / 'trials.db'}"

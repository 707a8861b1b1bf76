"""Rounds against the real MLflow (SQLite store in a temp dir): runs, artifacts, the registry,
the pyfunc model, promote/rollback and the leaderboard command."""

from __future__ import annotations

import csv
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from streamfit.config import Settings
from streamfit.datasets.adult import FEATURE_COLUMNS, load_adult
from streamfit.models.bundle import BUNDLE_FILES, BundleError, ModelStore, bundle_sha256
from streamfit.models.promotion import promote, rollback
from streamfit.models.registry import ModelRegistry
from streamfit.training import leaderboard_command, run_round
from streamfit.training.round import RoundOutcome
from streamfit.training.trials import TrialStore
from tests.data_sets import csv_of, sklearn_table


@dataclass
class Rounds:
    settings: Settings
    first: RoundOutcome
    second: RoundOutcome
    client: MlflowClient


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory, adult_small: pd.DataFrame) -> Rounds:
    settings = Settings(data_dir=tmp_path_factory.mktemp("mlflow") / "data", seed=5)
    first = run_round(settings, trigger="initial", max_evals=3, base_data=adult_small)
    observations = load_adult("test").head(30).drop(columns="income_bracket")
    second = run_round(
        settings,
        trigger="retrain",
        max_evals=3,
        base_data=adult_small,
        new_observations=observations,
    )
    return Rounds(settings, first, second, MlflowClient(tracking_uri=settings.mlflow_uri))


def test_parent_and_child_runs(rounds: Rounds) -> None:
    client = rounds.client
    experiment = client.get_experiment_by_name("streamfit")
    assert experiment.artifact_location == rounds.settings.artifact_location
    # The empty Default experiment SQLite creates is not left listed in front of ours.
    assert [e.name for e in client.search_experiments()] == ["streamfit"]
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {p.info.run_id for p in parents} == {
        rounds.first.mlflow_run_id,
        rounds.second.mlflow_run_id,
    }
    assert len(children) == 6
    parent = client.get_run(rounds.second.mlflow_run_id)
    tags = parent.data.tags
    assert tags["trigger"] == "retrain" and tags["optimizer"] == "hyperopt"
    assert tags["round"] == str(rounds.second.round_id)
    assert int(tags["data_rows"]) == TrialStore(rounds.settings.trials_url).rounds()[1]["data_rows"]
    assert tags["gate"] == ("promoted" if rounds.second.promoted else "refused")
    assert tags["gate_reason"] == rounds.second.reason
    metrics = parent.data.metrics
    for name in ("best_cv_log_loss", "test_auc", "test_log_loss", "test_accuracy"):
        assert name in metrics
    assert metrics["test_auc"] == pytest.approx(rounds.second.metrics["auc"])
    assert parent.data.params["num_leaves"] == str(rounds.second.params["num_leaves"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {
        "optimization_history.png",
        "parallel_coordinates.png",
        "roc_curve.png",
        "calibration_curve.png",
        "leaderboard.csv",
    } <= artifacts
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"cv_log_loss", "rounds"} <= set(child.data.metrics)
        assert "learning_rate" in child.data.params
        assert client.list_artifacts(child.info.run_id) == []
    # One logged model per round, none per trial.
    models = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list"
    )
    assert sorted(m.source_run_id for m in models) == sorted(
        [rounds.first.mlflow_run_id, rounds.second.mlflow_run_id]
    )


def test_registry_versions_aliases_and_manifest(rounds: Rounds) -> None:
    name = rounds.settings.registered_model
    versions = rounds.client.search_model_versions(f"name='{name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert int(rounds.client.get_model_version_by_alias(name, "challenger").version) == 2
    champion = ModelStore(rounds.settings.models_dir).champion()
    bundle = ModelStore(rounds.settings.models_dir).load(champion)
    registry = bundle.manifest["registry_version"]
    assert int(rounds.client.get_model_version_by_alias(name, "champion").version) == registry
    # one version number: the trainer stores each bundle under its registry version
    assert champion == registry == bundle.version
    # the registered files' digest is tagged on the version, and a reader re-derives it
    tag = rounds.client.get_model_version(name, str(registry)).tags["sha256"]
    assert bundle.manifest["sha256"] == tag
    reader = ModelRegistry.from_settings(rounds.settings)
    fetched, directory = reader.load(reader.champion(), rounds.settings.data_dir / "reader")
    assert bundle_sha256(directory) == tag and fetched.version == registry
    assert sorted(p.name for p in directory.iterdir()) == sorted(BUNDLE_FILES)
    assert bundle.manifest["mlflow_run_id"] in (
        rounds.first.mlflow_run_id,
        rounds.second.mlflow_run_id,
    )


def test_pyfunc_champion_predicts_raw_rows_like_the_bundle(rounds: Rounds) -> None:
    mlflow.set_tracking_uri(rounds.settings.mlflow_uri)
    model = mlflow.pyfunc.load_model(f"models:/{rounds.settings.registered_model}@champion")
    raw = load_adult("test").iloc[100:160][list(FEATURE_COLUMNS)].reset_index(drop=True)
    assert raw.isna().any().any()  # missing values must pass through the signature too
    predicted = np.asarray(model.predict(raw))
    store = ModelStore(rounds.settings.models_dir)
    bundle = store.load(store.champion())
    expected = bundle.predict_records(
        raw.astype(object).where(raw.notna(), None).to_dict("records")
    )
    np.testing.assert_allclose(predicted, expected, rtol=1e-12)
    assert ((predicted > 0) & (predicted < 1)).all()
    # Raw Adult as pandas reads the CSV: whole numbers are int64, which must be accepted too.
    integers = raw.dropna(subset=["age"]).astype({"age": "int64", "fnlwgt": "int64"})
    np.testing.assert_allclose(
        np.asarray(model.predict(integers)), predicted[integers.index], rtol=1e-12
    )


def test_promote_and_rollback_move_pointer_and_alias(rounds: Rounds) -> None:
    settings, client = rounds.settings, rounds.client
    store = ModelStore(settings.models_dir)
    name = settings.registered_model

    def alias() -> int:
        return int(client.get_model_version_by_alias(name, "champion").version)

    assert promote(settings, 2).version == 2
    assert store.champion() == 2 and alias() == 2
    assert rollback(settings).version == 1
    assert store.champion() == 1 and alias() == 1
    with pytest.raises(BundleError, match="no earlier champion"):
        rollback(settings)
    assert promote(settings, 2).version == 2
    assert store.champion() == 2 and alias() == 2
    with pytest.raises(BundleError):
        promote(settings, 99)
    assert store.champion() == 2


def test_leaderboard_command_matches_the_store(rounds: Rounds) -> None:
    settings = rounds.settings
    store = TrialStore(settings.trials_url)
    best = store.leaderboard(limit=4)
    rows = list(csv.DictReader(io.StringIO(leaderboard_command(settings, limit=4, fmt="csv"))))
    assert [float(r["cv_loss"]) for r in rows] == [t["cv_loss"] for t in best]
    assert [int(r["rounds"]) for r in rows] == [t["rounds"] for t in best]
    assert [json.loads(r["params"]) for r in rows] == [t["params"] for t in best]
    as_json = json.loads(
        leaderboard_command(settings, round_id=rounds.first.round_id, limit=10, fmt="json")
    )
    assert {r["round_id"] for r in as_json} == {rounds.first.round_id}
    assert len(as_json) == len(store.leaderboard(round_id=rounds.first.round_id))
    assert leaderboard_command(settings, optimizer="skopt") == "no trials recorded"
    table = leaderboard_command(settings, limit=2)
    assert table.splitlines()[0].split()[:4] == ["round_id", "number", "optimizer", "cv_loss"]
    assert f"{best[0]['cv_loss']:.5f}" in table.splitlines()[1]
    with pytest.raises(ValueError, match="format"):
        leaderboard_command(settings, fmt="xml")


def test_round_progress_and_mlflow_overhead_are_reported(
    tmp_path: Path, adult_small: pd.DataFrame
) -> None:
    lines: list[str] = []
    settings = Settings(data_dir=tmp_path / "d", seed=1)
    outcome = run_round(
        settings, trigger="manual", max_evals=2, base_data=adult_small, progress=lines.append
    )
    assert any(line.startswith("trial 2/2: cv logloss") for line in lines)
    assert 0 < outcome.tracking_s < outcome.duration_s


def test_a_regression_round_logs_its_cv_loss_as_rmse(tmp_path: Path) -> None:
    """The CV loss is the task's: RMSE for regression, logged as ``best_cv_rmse`` beside the
    round's test and holdout RMSE, ``cv_rmse`` on each trial, ``cv_loss`` in the trial store."""
    data = csv_of(sklearn_table("diabetes"), tmp_path, "diabetes")
    settings = Settings(data_dir=tmp_path / "d", seed=2, data=str(data), label="target")
    lines: list[str] = []
    outcome = run_round(settings, trigger="initial", max_evals=2, progress=lines.append)
    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    metrics = client.get_run(outcome.mlflow_run_id).data.metrics
    assert metrics["best_cv_rmse"] == pytest.approx(outcome.metrics["cv_loss"])
    assert {"test_rmse", "holdout_rmse"} <= set(metrics)
    # what the trainer's holdout gauge shows, whatever the task
    assert outcome.metrics["holdout_loss"] == metrics["holdout_rmse"]
    assert not any("log" in name for name in metrics)
    experiment = client.get_experiment_by_name("streamfit")
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{outcome.mlflow_run_id}'"
    )
    assert len(children) == 2 and all("cv_rmse" in c.data.metrics for c in children)
    store = TrialStore(settings.trials_url)
    assert store.leaderboard(limit=1)[0]["cv_loss"] == outcome.metrics["cv_loss"]
    store.close()
    assert any(line.startswith("trial 2/2: cv rmse") for line in lines)


def test_predictors_sharing_a_cache_fetch_the_same_version_at_once(rounds: Rounds) -> None:
    """Two predictors on one data directory hear the same models event: both end with the
    verified bundle, and neither deletes the copy the other is loading."""
    registry = ModelRegistry.from_settings(rounds.settings)
    entry = registry.champion()
    cache = rounds.settings.data_dir / "shared-cache"
    start = threading.Barrier(4)

    def fetch() -> tuple[str, int]:
        start.wait()
        bundle, directory = ModelRegistry.from_settings(rounds.settings).load(entry, cache)
        return bundle_sha256(directory), bundle.booster.num_trees()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fetch(), range(4)))
    assert {digest for digest, _ in results} == {entry.sha256}
    assert len({trees for _, trees in results}) == 1
    # a copy that no longer matches is replaced, not trusted
    (cache / f"v{entry.version:06d}" / "model.txt").write_text("tampered")
    _, directory = registry.load(entry, cache)
    assert bundle_sha256(directory) == entry.sha256
    assert [p.name for p in cache.iterdir()] == [f"v{entry.version:06d}"]  # no staging left

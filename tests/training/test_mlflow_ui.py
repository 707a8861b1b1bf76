"""What a user opening the MLflow UI sees, on the real tracking server (scripts/mlflow): the
experiment opens on its training runs (its kind is tagged), each round's run says what triggered
it and what the gate decided, and registering a model prints nothing."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from streamfit.config import Settings
from streamfit.datasets.adult import load_adult
from streamfit.tracking import get_tracker
from streamfit.training import run_round


def test_experiment_kind_and_round_descriptions(
    tmp_path: Path,
    mlflow_server: str,
    adult_small: pd.DataFrame,
    capfd: pytest.CaptureFixture[str],
) -> None:
    name = f"test-ui-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        data_dir=tmp_path / "data",
        tracking_uri=mlflow_server,
        experiment=name,
        registered_model=name,
        seed=4,
    )
    first = run_round(settings, trigger="initial", max_evals=2, base_data=adult_small)
    observed = load_adult("test").head(40).drop(columns="income_bracket")
    second = run_round(
        settings, trigger="retrain", max_evals=2, base_data=adult_small, new_observations=observed
    )
    # mlflow.register_model's "Successfully registered model" / "Created version" lines
    assert "registered model" not in capfd.readouterr().err.lower()

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(name)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    initial = client.get_run(first.mlflow_run_id).data.tags["mlflow.note.content"]
    assert initial.startswith(f"**Round {first.round_id}**, triggered by the initial training")
    assert f"**Gate: v{first.version} promoted**: {first.reason}." in initial

    retrain = client.get_run(second.mlflow_run_id).data.tags["mlflow.note.content"]
    assert "triggered by a retrain command" in retrain
    assert f"every {settings.retrain_every} labelled observations" in retrain
    observed_in_training = int(re.search(r"\((\d+) observed\)", retrain).group(1))
    assert 0 < observed_in_training < len(observed)  # the newest are the gate's holdout
    verdict = "promoted" if second.promoted else "refused"
    assert f"**Gate: v{second.version} {verdict}**: {second.reason}." in retrain
    assert f"against champion v{first.version}'s" in retrain  # the gate compared the two

    # the registry version links back from the logged model, as mlflow.register_model does
    version = client.get_model_version(name, str(second.registry_version))
    assert version.tags["sha256"] and version.run_id == second.mlflow_run_id


def test_an_experiment_made_elsewhere_gets_its_kind_when_used(mlflow_server: str) -> None:
    name = f"test-ui-{uuid.uuid4().hex[:10]}"
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment_id = client.create_experiment(name)
    assert "mlflow.experimentKind" not in client.get_experiment(experiment_id).tags
    tracker = get_tracker(mlflow_server, Settings(experiment=name))
    assert tracker.experiment_id == experiment_id
    kind = client.get_experiment(experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"

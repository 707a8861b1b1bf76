"""The round's final fit on a Dask cluster: a LocalCluster of two worker processes stands in for
the machines (a correctness test: on two cores it is not a speed test)."""

from __future__ import annotations

import os
import signal
import threading
import time

import dask.array as da
import numpy as np
import orjson
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from streamfit import messages
from streamfit.config import ConfigError, Settings
from streamfit.contract import task_of
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import FEATURE_COLUMNS, load_adult
from streamfit.datasets.adult import requests as adult_requests
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import ModelStore
from streamfit.tracking import NullTracker
from streamfit.training import dask_fit
from streamfit.training.objective import fit_final
from streamfit.training.round import TrainingError, run_round
from streamfit.training.space import DEFAULT_SPACE, lightgbm_params
from streamfit.training.trials import TrialStore
from tests.serving.conftest import Running, mlflow_settings


def _cluster() -> LocalCluster:
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)


@pytest.fixture(scope="module")
def cluster():
    with _cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_adult("train")[[*FEATURE_COLUMNS, "label"]], load_adult("test")


def test_cluster_fit_matches_one_process_and_to_local_predicts_as_the_cluster(cluster, adult):
    train, test = adult
    rules = task_of(ADULT)
    pipeline = FeaturePipeline(ADULT).fit(train)
    params = dict(DEFAULT_SPACE.start)
    full, _cap = lightgbm_params(
        DEFAULT_SPACE,
        params,
        threads=1,
        seed=3,
        feature_names=pipeline.feature_names,
        task=rules.lightgbm_params(),
    )
    single = fit_final(
        pipeline.transform(train),
        train["label"].to_numpy(),
        pipeline.categorical_features,
        DEFAULT_SPACE,
        params,
        250,
        threads=1,
        seed=3,
        feature_names=pipeline.feature_names,
        rules=rules,
    )
    rounds = single.current_iteration()
    with Client(cluster) as client:
        model = dask_fit.fit_model(
            client, dask_fit.partitioned(client, train, 2), pipeline, full, rounds, timeout_s=600
        )
        features = pipeline.transform(test)
        on_cluster = model.predict_proba(da.from_array(features, chunks=(4000, -1))).compute()
    local = model.to_local()
    assert local.booster_.current_iteration() == rounds
    assert np.array_equal(local.predict_proba(features), on_cluster)
    labels = test["label"].to_numpy()
    auc_cluster = rules.metrics(labels, on_cluster[:, 1])["auc"]
    auc_single = rules.metrics(labels, single.predict(features))["auc"]
    assert abs(auc_cluster - auc_single) <= 0.002, (auc_cluster, auc_single)


def test_a_round_fit_on_the_cluster_is_served_through_the_normal_path(
    cluster, tmp_path, mlflow_server
):
    settings = mlflow_settings(
        tmp_path, mlflow_server, dask_scheduler=cluster.scheduler_address, linger_ms=1, seed=3
    )
    small = load_adult("train").sample(3000, random_state=7)
    lines: list[str] = []
    outcome = run_round(
        settings, trigger="initial", max_evals=2, base_data=small, progress=lines.append
    )
    assert outcome.promoted and outcome.registry_version == 1
    assert any("refit on the Dask cluster" in line for line in lines)
    bundle = ModelStore(settings.models_dir).load(outcome.version)
    rows = adult_requests(20, seed=2)
    service = Running(settings)
    try:
        for i, row in enumerate(rows):
            service.send("requests", messages.request(f"r{i}", row))
        answers = {
            a["request_id"]: a
            for a in (orjson.loads(m.value) for m in service.collect(20))
            if "probability" in a
        }
    finally:
        service.stop()
    expected = bundle.predict_records(rows)
    assert len(answers) == 20
    for i, probability in enumerate(expected):
        assert answers[f"r{i}"]["model_version"] == 1
        assert answers[f"r{i}"]["probability"] == pytest.approx(probability)


def test_a_worker_killed_mid_fit_fails_the_round_instead_of_hanging(tmp_path, settings, adult):
    """Its own cluster: the killed worker's nanny restarts it under another address."""
    train, _test = adult
    with _cluster() as cluster, Client(cluster) as watcher:
        settings = settings.replace(dask_scheduler=cluster.scheduler_address)
        killed: list[float] = []

        def kill_when_training() -> None:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and not killed:
                for address, tasks in watcher.processing().items():
                    if any("train_part" in str(task) for task in tasks):
                        (pid,) = watcher.run(os.getpid, workers=[address]).values()
                        os.kill(pid, signal.SIGKILL)
                        killed.append(time.monotonic())
                        return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_training, daemon=True)
        killer.start()
        with pytest.raises(TrainingError, match="lost mid-fit"):
            run_round(
                settings,
                trigger="initial",
                max_evals=1,
                tracker=NullTracker(),
                base_data=train,
                warm_start=False,
            )
        failed = time.monotonic()
        killer.join(5)
    assert killed and failed - killed[0] < settings.dask_timeout_seconds
    assert ModelStore(settings.models_dir).champion() is None  # nothing promoted
    (round_row,) = TrialStore(settings.trials_url).rounds()
    assert round_row["status"] == "failed"


def test_a_scheduler_address_without_its_scheme_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="dask_scheduler must be a scheduler address"):
        Settings(data_dir=tmp_path, dask_scheduler="scheduler:8786")

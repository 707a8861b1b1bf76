"""One suite over every task's rules (binary, multiclass, regression): label encoding, LightGBM's
objective, the metrics, the published prediction."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pytest

from streamfit.contract import ColumnSpec, Contract, task_of

SIZE = ColumnSpec("size", "numeric", "float")
CONTRACTS = {
    "binary": Contract("binary", "y", (SIZE,), classes=("no", "yes"), positive_class="yes"),
    "multiclass": Contract("multiclass", "y", (SIZE,), classes=("a", "b", "c")),
    "regression": Contract("regression", "y", (SIZE,)),
}
# Raw labels of each task, as a table or a label message has them.
LABELS = {
    "binary": ["no", "yes", " yes"],
    "multiclass": ["c", "a", "b"],
    "regression": [1.5, -2, 0],
}


@pytest.fixture(params=list(CONTRACTS))
def rules(request):
    return task_of(CONTRACTS[request.param])


def test_labels_round_trip_and_anything_else_is_refused(rules) -> None:
    encoded = [rules.encode_label(value) for value in LABELS[rules.name]]
    assert all(isinstance(value, float) for value in encoded)
    assert [rules.encode_label(rules.label_of(value)) for value in encoded] == encoded
    for wrong in ("maybe", None, [1], {"y": 1}, math.nan):
        assert rules.encode_label(wrong) is None, wrong
    assert np.isnan(rules.encode_labels([None, "maybe"])).all()


def test_binary_labels_are_the_positive_class_indicator() -> None:
    rules = task_of(CONTRACTS["binary"])
    assert [rules.encode_label(v) for v in ("yes", "no", 1, 0, True)] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert rules.encode_label(2) is None


def test_a_model_of_the_tasks_objective_is_scored_by_its_loss_and_report(rules) -> None:
    rng = np.random.default_rng(0)
    size = rng.uniform(0, 3, 300)
    targets = {
        "binary": (size > 1.5).astype(float),
        "multiclass": np.floor(size).astype(float),
        "regression": 2 * size + rng.normal(0, 0.1, 300),
    }[rules.name]
    params = {**rules.lightgbm_params(), "verbosity": -1, "min_data_in_leaf": 5}
    booster = lgb.train(params, lgb.Dataset(size.reshape(-1, 1), targets), num_boost_round=30)
    outputs = booster.predict(size.reshape(-1, 1))
    assert rules.check_output(outputs) is None
    metrics = rules.metrics(targets, outputs)
    assert set(metrics) == {rules.loss, *rules.report}
    assert all(math.isfinite(v) for v in metrics.values())
    # A learnt model beats a constant one on the task's loss.
    constant = (
        np.tile(outputs.mean(axis=0), (len(outputs), 1))
        if outputs.ndim == 2
        else (np.full(len(outputs), outputs.mean()))
    )
    assert metrics[rules.loss] < rules.metrics(targets, constant)[rules.loss]
    published = rules.predictions(outputs)
    assert len(published) == len(outputs) and "request_id" not in published[0]


def test_each_task_publishes_its_own_fields() -> None:
    binary, multiclass, regression = (task_of(CONTRACTS[t]) for t in CONTRACTS)
    assert binary.predictions(np.array([0.75, 0.25])) == [
        {"probability": 0.75, "label": 1},
        {"probability": 0.25, "label": 0},
    ]
    # On a tie, the first of the likeliest classes.
    assert multiclass.predictions(np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4]])) == [
        {"label": "b", "probabilities": {"a": 0.2, "b": 0.5, "c": 0.3}},
        {"label": "a", "probabilities": {"a": 0.4, "b": 0.2, "c": 0.4}},
    ]
    assert regression.predictions(np.array([4.25])) == [{"value": 4.25}]


def test_outputs_of_another_task_are_refused() -> None:
    multiclass = task_of(CONTRACTS["multiclass"])
    assert "3 class probabilities" in multiclass.check_output(np.array([[0.5, 0.5]]))
    assert "not probabilities" in task_of(CONTRACTS["binary"]).check_output(np.array([1.5]))
    assert task_of(CONTRACTS["regression"]).check_output(np.array([np.inf])) is not None

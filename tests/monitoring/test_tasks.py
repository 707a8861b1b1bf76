"""Realised performance and output drift per task (binary, multiclass, regression): one suite
over every task's output-drift test on seeded predictions, and the realised metrics against
scikit-learn's own."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from streamfit.monitoring import DriftReport, realised_performance
from streamfit.monitoring.output import OUTPUT_DRIFTS, output_drift_for
from streamfit.monitoring.performance import TASK_METRICS

Draw = Callable[[int, int, str], tuple[np.ndarray, np.ndarray]]
ALPHA = 0.01


def _binary(n: int, seed: int, shift: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(3, 4, n) if shift == "output" else rng.beta(2, 5, n)
    truth = np.clip(p + 0.15, 0, 1) if shift == "concept" else p
    return p, (rng.random(n) < truth).astype(int)


def _multiclass(n: int, seed: int, shift: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([2.0, 0.6, 0.6] if shift == "output" else [0.6] * 3, n)
    truth = p
    if shift == "concept":  # the same predictions, but class 0 now more often right
        truth = p + [[0.3, 0.0, 0.0]]
        truth /= truth.sum(axis=1, keepdims=True)
    return p, (truth.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)


def _regression(n: int, seed: int, shift: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.normal(0.3 if shift == "output" else 0.0, 1.0, n)
    return v, v + rng.normal(0.3 if shift == "concept" else 0.0, 0.5, n)


DRAWS: dict[str, Draw] = {"binary": _binary, "multiclass": _multiclass, "regression": _regression}


@pytest.fixture(params=sorted(OUTPUT_DRIFTS))
def task(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fitted(task: str):
    return output_drift_for(task).fit(*DRAWS[task](5000, 0, "none"))


# -- output drift, every task ----------------------------------------------------------------
def test_an_undrifted_window_raises_nothing(task: str, fitted) -> None:
    predictions, labels = DRAWS[task](1000, 1, "none")
    output = fitted.test_output(predictions, ALPHA)
    assert output["n"] == 1000 and not output["drifted"] and output["p_value"] > ALPHA
    assert not fitted.test_labels(predictions, labels, ALPHA)["drifted"]


def test_a_shifted_output_is_caught(task: str, fitted) -> None:
    predictions, _ = DRAWS[task](1000, 2, "output")
    output = fitted.test_output(predictions, ALPHA)
    assert output["drifted"] and output["p_value"] < 1e-6
    assert output["shares"] != pytest.approx(output["reference_shares"], abs=0.03)


def test_a_concept_shift_shows_in_the_labels_not_the_output(task: str, fitted) -> None:
    predictions, labels = DRAWS[task](1000, 3, "concept")
    assert not fitted.test_output(predictions, ALPHA)["drifted"]
    assert fitted.test_labels(predictions, labels, ALPHA)["drifted"]


def test_no_predictions_or_labels_means_nothing_to_test(task: str, fitted) -> None:
    predictions, labels = DRAWS[task](100, 4, "none")
    assert fitted.test_output(predictions[:0], ALPHA) is None
    assert fitted.test_labels(predictions[:0], labels[:0], ALPHA) is None
    unlabelled = output_drift_for(task).fit(predictions)
    assert unlabelled.test_labels(predictions, labels, ALPHA) is None


def test_the_fitted_state_round_trips_through_json(task: str, fitted) -> None:
    predictions, labels = DRAWS[task](500, 5, "output")
    restored = type(fitted).from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert restored.test_output(predictions, ALPHA) == fitted.test_output(predictions, ALPHA)
    assert restored.test_labels(predictions, labels, ALPHA) == fitted.test_labels(
        predictions, labels, ALPHA
    )


def test_the_report_explains_each_task_s_layers(task: str, fitted) -> None:
    predictions, labels = DRAWS[task](1000, 6, "output")
    report = DriftReport(window_end=1000, drift=0.0, drifted=False, features={})
    report.add_output(
        fitted.test_output(predictions, ALPHA), fitted.test_labels(predictions, labels, ALPHA)
    )
    assert report.drifted
    text = "\n".join(report.verdict_lines)
    assert "Model output: shifted" in text
    page = report.to_html()
    assert 'id="output"' in page and 'id="labels"' in page
    event = report.to_event()
    json.dumps(event)  # plain JSON, the share lists left out
    assert event["output"]["drifted"] is True and "shares" not in event["output"]


def test_too_few_reference_predictions_are_refused(task: str) -> None:
    predictions, _ = DRAWS[task](5, 7, "none")
    with pytest.raises(ValueError, match="at least 10"):
        output_drift_for(task).fit(predictions)


def test_an_unfitted_test_or_an_unknown_task_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        output_drift_for("regression").test_output(np.zeros(3), ALPHA)
    with pytest.raises(ValueError, match="task must be one of"):
        output_drift_for("ranking")


def test_multiclass_output_must_keep_its_width() -> None:
    fitted = output_drift_for("multiclass").fit(_multiclass(500, 0, "none")[0])
    with pytest.raises(ValueError, match=r"\(n, 3\) matrix"):
        fitted.test_output(np.full((10, 4), 0.25), ALPHA)


# -- realised performance per task -----------------------------------------------------------
def test_multiclass_metrics_match_sklearn() -> None:
    p, y = _multiclass(2000, 8, "none")
    metrics = realised_performance("multiclass", y, p)
    predicted = p.argmax(axis=1)
    assert metrics == pytest.approx(
        {
            "n": 2000,
            "log_loss": log_loss(y, p, labels=[0, 1, 2]),
            "accuracy": accuracy_score(y, predicted),
            "macro_f1": f1_score(y, predicted, average="macro"),
        }
    )


def test_regression_metrics_match_sklearn() -> None:
    v, y = _regression(2000, 9, "none")
    assert realised_performance("regression", y, v) == pytest.approx(
        {
            "n": 2000,
            "rmse": math.sqrt(mean_squared_error(y, v)),
            "mae": mean_absolute_error(y, v),
            "r2": r2_score(y, v),
        }
    )


def test_binary_is_as_before() -> None:
    p, y = _binary(500, 10, "none")
    metrics = realised_performance("binary", y, p)
    assert set(metrics) == {"n", *TASK_METRICS["binary"]}
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5))


def test_every_task_survives_tiny_and_empty_windows(task: str) -> None:
    predictions, labels = DRAWS[task](1, 11, "none")
    one = realised_performance(task, labels, predictions)
    empty = realised_performance(task, labels[:0], predictions[:0])
    assert one["n"] == 1 and set(one) == {"n", *TASK_METRICS[task]}
    assert empty["n"] == 0 and all(math.isnan(empty[m]) for m in TASK_METRICS[task])


def test_a_class_missing_from_the_window_still_counts_in_macro_f1() -> None:
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    assert realised_performance("multiclass", [0, 1], p)["macro_f1"] == pytest.approx(2 / 3)


def test_bad_labels_or_shapes_are_refused() -> None:
    p = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="within 0..2"):
        realised_performance("multiclass", [0, 1, 3], p)
    with pytest.raises(ValueError, match="n, k >= 2"):
        realised_performance("multiclass", [0, 1], p)
    with pytest.raises(ValueError, match="differ in shape"):
        realised_performance("regression", [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="task must be one of"):
        realised_performance("ranking", [1], [1])

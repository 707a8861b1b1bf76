"""Label-free estimators: one contract suite over every task's implementation (on
scikit-learn's bundled data sets), then what each method must get right: CBPE multiclass within
a tolerance of the realised metrics without shift and following them under a covariate shift,
calibration applied only where it helps, and DLE tracking RMSE when errors are heteroscedastic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import metadata

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_classification,
)

from streamfit.monitoring import realised_performance as performance
from streamfit.monitoring.estimators import (
    ESTIMATORS,
    MulticlassCBPE,
    PerformanceEstimator,
    RegressionDLE,
    estimator_for,
    estimator_from_dict,
)

TASKS = sorted(ESTIMATORS)
MODEL = {"n_estimators": 60, "min_child_samples": 5, "verbose": -1, "num_threads": 1}


@dataclass
class Case:
    """A model's labelled reference predictions and an unlabelled window, for one task."""

    task: str
    reference: tuple[np.ndarray, np.ndarray, pd.DataFrame]
    window: tuple[np.ndarray, np.ndarray, pd.DataFrame]


def _predict(model: lgb.LGBMModel, task: str, x: pd.DataFrame) -> np.ndarray:
    if task == "binary":
        return model.predict_proba(x)[:, 1]
    if task == "multiclass":
        return model.predict_proba(x)
    return model.predict(x)


def _case(task: str, seed: int = 0) -> Case:
    loader = {"binary": load_breast_cancer, "multiclass": load_wine, "regression": load_diabetes}
    x, y = loader[task](return_X_y=True, as_frame=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x.iloc[order].reset_index(drop=True), y.iloc[order].to_numpy()
    thirds = [
        slice(0, len(x) // 3),
        slice(len(x) // 3, 2 * len(x) // 3),
        slice(2 * len(x) // 3, None),
    ]
    model = (lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier)(**MODEL)
    model.fit(x[thirds[0]], y[thirds[0]])
    parts = [(_predict(model, task, x[s]), y[s], x[s].reset_index(drop=True)) for s in thirds[1:]]
    return Case(task, parts[0], parts[1])


@pytest.fixture(scope="module", params=TASKS)
def case(request: pytest.FixtureRequest) -> Case:
    return _case(request.param)


@pytest.fixture(scope="module")
def fitted(case: Case) -> PerformanceEstimator:
    return estimator_for(case.task).fit(*case.reference)


# -- the contract every estimator keeps ------------------------------------------------------
def test_the_factory_gives_the_task_s_estimator(case: Case) -> None:
    estimator = estimator_for(case.task)
    assert estimator.task == case.task
    assert isinstance(estimator, ESTIMATORS[case.task])


def test_an_estimate_has_n_and_every_metric(case: Case, fitted: PerformanceEstimator) -> None:
    predictions, _, features = case.window
    estimate = fitted.estimate(predictions, features)
    assert set(estimate) == {"n", *fitted.metrics}
    assert estimate["n"] == len(predictions)
    assert all(math.isfinite(estimate[m]) for m in fitted.metrics)


def test_the_estimate_is_near_the_realised_metric(case: Case, fitted: PerformanceEstimator) -> None:
    """Small data sets and windows (60 to 190 rows): a loose tolerance, but one a constant
    estimate or a wrong formula misses."""
    predictions, labels, features = case.window
    estimate = fitted.estimate(predictions, features)
    realised = performance(case.task, labels, predictions)
    if case.task == "regression":
        assert estimate["mae"] == pytest.approx(realised["mae"], rel=0.2)
        assert estimate["rmse"] == pytest.approx(realised["rmse"], rel=0.2)
    else:
        assert estimate["accuracy"] == pytest.approx(realised["accuracy"], abs=0.06)
        f1 = "f1" if case.task == "binary" else "macro_f1"
        assert estimate[f1] == pytest.approx(realised[f1], abs=0.06)


def test_it_round_trips_through_json(case: Case, fitted: PerformanceEstimator) -> None:
    predictions, _, features = case.window
    restored = estimator_from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert type(restored) is type(fitted)
    assert restored.estimate(predictions, features) == fitted.estimate(predictions, features)


def test_an_empty_window_has_no_estimate(case: Case, fitted: PerformanceEstimator) -> None:
    predictions, _, features = case.window
    estimate = fitted.estimate(predictions[:0], features.iloc[:0])
    assert estimate["n"] == 0
    assert all(math.isnan(estimate[m]) for m in fitted.metrics)


def test_an_unfitted_estimator_says_so(case: Case) -> None:
    predictions, _, features = case.window
    with pytest.raises(RuntimeError, match="not fitted"):
        estimator_for(case.task).estimate(predictions, features)


def test_mismatched_or_missing_reference_is_refused(case: Case) -> None:
    predictions, labels, features = case.reference
    with pytest.raises(ValueError, match="differ in length"):
        estimator_for(case.task).fit(predictions, labels[:-1], features)
    with pytest.raises(ValueError, match="none"):
        estimator_for(case.task).fit(predictions[:0], labels[:0], features.iloc[:0])


def test_an_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="task must be one of"):
        estimator_for("ranking")
    with pytest.raises(ValueError, match="unknown estimator task"):
        estimator_from_dict({"task": "ranking"})


# -- multiclass CBPE ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_classes() -> tuple[MulticlassCBPE, np.ndarray, np.ndarray, np.ndarray]:
    """A model trained on 4,000 seeded rows of 3 classes, the estimator fitted on its
    predictions of 4,000 more, and 4,000 held-out rows (probabilities, labels, features)."""
    x, y = make_classification(
        12_000,
        10,
        n_informative=6,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=0.8,
        random_state=0,
    )
    model = lgb.LGBMClassifier(n_estimators=100, verbose=-1, num_threads=1).fit(x[:4000], y[:4000])
    estimator = MulticlassCBPE().fit(model.predict_proba(x[4000:8000]), y[4000:8000])
    return estimator, model.predict_proba(x[8000:]), y[8000:], x[8000:]


def test_cbpe_multiclass_is_near_the_realised_metrics_without_shift(three_classes) -> None:
    estimator, proba, labels, _ = three_classes
    gaps = []
    for chunk in np.array_split(np.arange(len(labels)), 4):
        estimate = estimator.estimate(proba[chunk])
        realised = performance("multiclass", labels[chunk], proba[chunk])
        gaps.append([estimate[m] - realised[m] for m in ("accuracy", "macro_f1", "log_loss")])
    gaps = np.abs(np.array(gaps))
    assert gaps[:, :2].max() < 0.03  # accuracy and macro-F1, chunks of 1,000 rows
    assert gaps[:, 2].max() < 0.06  # log loss (realised ~0.28)


def test_cbpe_multiclass_follows_a_covariate_shift_into_harder_rows(three_classes) -> None:
    """Rows drawn with weight growing with the model's doubt: P(y | x) is unchanged, the
    realised accuracy falls by more than 0.1, and the estimate falls with it."""
    estimator, proba, labels, _ = three_classes
    rng = np.random.default_rng(1)
    weights = 1.0 - proba.max(axis=1) + 0.01
    hard = rng.choice(len(labels), 1000, replace=False, p=weights / weights.sum())
    easy = rng.choice(len(labels), 1000, replace=False)
    realised = {
        name: performance("multiclass", labels[rows], proba[rows])
        for name, rows in (("hard", hard), ("easy", easy))
    }
    assert realised["easy"]["accuracy"] - realised["hard"]["accuracy"] > 0.1
    for name, rows in (("hard", hard), ("easy", easy)):
        estimate = estimator.estimate(proba[rows])
        assert estimate["accuracy"] == pytest.approx(realised[name]["accuracy"], abs=0.03)
        assert estimate["macro_f1"] == pytest.approx(realised[name]["macro_f1"], abs=0.03)
        assert estimate["log_loss"] == pytest.approx(realised[name]["log_loss"], abs=0.08)


def _dirichlet_truth(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities of 4 classes and labels drawn from them."""
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet([0.6] * 4, n)
    labels = (truth.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return truth, labels


def _overconfident(p: np.ndarray) -> np.ndarray:
    sharp = p**3
    return sharp / sharp.sum(axis=1, keepdims=True)


def test_calibration_is_applied_where_it_helps_and_harmless_elsewhere() -> None:
    """Every class of an overconfident model gets a map. On probabilities calibrated already
    the cross-validated ECE decides by noise, and a class that gets a map gets one that barely
    moves the estimate."""
    truth, labels = _dirichlet_truth(3000, 2)
    overconfident = MulticlassCBPE().fit(_overconfident(truth), labels)
    assert all(c is not None for c in overconfident.calibrators)
    calibrated = MulticlassCBPE().fit(truth, labels)
    plain = MulticlassCBPE.from_dict({**calibrated.to_dict(), "calibrators": [None] * 4})
    window, _ = _dirichlet_truth(1000, 5)
    for metric, value in calibrated.estimate(window).items():
        assert value == pytest.approx(plain.estimate(window)[metric], abs=0.01)


def test_calibration_repairs_an_overconfident_model_s_estimate() -> None:
    truth, labels = _dirichlet_truth(6000, 3)
    scores = _overconfident(truth)
    estimator = MulticlassCBPE().fit(scores[:3000], labels[:3000])
    realised = performance("multiclass", labels[3000:], scores[3000:])
    estimate = estimator.estimate(scores[3000:])
    uncalibrated = MulticlassCBPE.from_dict({**estimator.to_dict(), "calibrators": [None] * 4})
    naive = uncalibrated.estimate(scores[3000:])
    assert naive["accuracy"] - realised["accuracy"] > 0.05  # the raw scores promise too much
    assert estimate["accuracy"] == pytest.approx(realised["accuracy"], abs=0.02)
    assert estimate["log_loss"] == pytest.approx(realised["log_loss"], rel=0.05)
    assert np.allclose(estimator.calibrate(scores[3000:]).sum(axis=1), 1.0)


def test_cbpe_multiclass_on_digits() -> None:
    """Real data, ten classes: the estimate of each held-out half is near its realised accuracy."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    model = lgb.LGBMClassifier(n_estimators=100, verbose=-1, num_threads=1).fit(x[:600], y[:600])
    estimator = MulticlassCBPE().fit(model.predict_proba(x[600:1200]), y[600:1200])
    for rows in np.array_split(np.arange(1200, len(y)), 2):
        proba = model.predict_proba(x[rows])
        realised = performance("multiclass", y[rows], proba)["accuracy"]
        assert estimator.estimate(proba)["accuracy"] == pytest.approx(realised, abs=0.04)


def test_multiclass_predictions_must_be_a_matrix_of_the_fitted_width() -> None:
    truth, labels = _dirichlet_truth(300, 4)
    estimator = MulticlassCBPE().fit(truth, labels)
    with pytest.raises(ValueError, match="expected 4 class probabilities"):
        estimator.estimate(truth[:, :3])
    with pytest.raises(ValueError, match="matrix"):
        estimator.estimate(truth[:, 0])
    with pytest.raises(ValueError, match="class indices"):
        MulticlassCBPE().fit(truth, labels + 1)


# -- regression DLE ----------------------------------------------------------------------------
def _heteroscedastic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Four numeric features and a category; the noise grows with ``w`` and is doubled for
    category ``c``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    kind = rng.choice(["a", "b", "c"], n)
    noise = np.exp(0.8 * x[:, 0]) * np.where(kind == "c", 2.0, 1.0)
    y = x @ [1.0, 2.0, -1.0, 0.5] + rng.normal(size=n) * noise
    return pd.DataFrame(x, columns=list("wxyz")).assign(kind=kind), y


def test_dle_tracks_rmse_when_errors_are_heteroscedastic() -> None:
    frame, y = _heteroscedastic(9000, 0)
    model = lgb.LGBMRegressor(n_estimators=100, verbose=-1, num_threads=1)
    model.fit(frame[:3000].astype({"kind": "category"}), y[:3000])
    predictions = model.predict(frame.astype({"kind": "category"}))
    dle = RegressionDLE().fit(predictions[3000:6000], y[3000:6000], frame[3000:6000])
    assert list(dle.levels) == ["kind"]  # the text column is read as a category
    held_out = 6000 + np.argsort(frame["w"].to_numpy()[6000:])
    calm, noisy = held_out[:1000], held_out[-1000:]  # a covariate shift each way
    estimated = {}
    for name, rows in (("calm", calm), ("noisy", noisy), ("all", held_out)):
        realised = performance("regression", y[rows], predictions[rows])
        estimated[name] = dle.estimate(predictions[rows], frame.iloc[rows])
        assert estimated[name]["mae"] == pytest.approx(realised["mae"], rel=0.12)
        # The squared-error model leans up where errors are small: a looser bound there.
        assert estimated[name]["rmse"] == pytest.approx(realised["rmse"], rel=0.3)
    noisy_rmse = performance("regression", y[noisy], predictions[noisy])["rmse"]
    calm_rmse = performance("regression", y[calm], predictions[calm])["rmse"]
    assert noisy_rmse > 5 * calm_rmse  # the shift matters...
    assert estimated["noisy"]["rmse"] > 4 * estimated["calm"]["rmse"]  # ...and the estimate saw it


def _penguins() -> pd.DataFrame:
    path = metadata.distribution("palmerpenguins").locate_file("palmerpenguins/data/penguins.csv")
    return pd.read_csv(str(path)).dropna(subset=["body_mass_g"]).reset_index(drop=True)


def test_dle_reads_categories_with_missing_and_unseen_values() -> None:
    """Penguins' body mass from species, island, sex (with NaN) and the bill: a window with a
    species the reference never saw and missing values still gets an estimate."""
    frame = _penguins().sample(frac=1.0, random_state=0).reset_index(drop=True)
    features = frame.drop(columns=["body_mass_g", "year"])
    y = frame["body_mass_g"].to_numpy()
    encoded = features.astype({c: "category" for c in ("species", "island", "sex")})
    model = lgb.LGBMRegressor(**MODEL).fit(encoded[:170], y[:170])
    predictions = model.predict(encoded)
    dle = RegressionDLE(min_child_samples=10).fit(predictions[170:], y[170:], features[170:])
    assert set(dle.levels) == {"species", "island", "sex"}
    window = features[:60].assign(species="Emperor")
    window.loc[::3, ["sex", "bill_length_mm"]] = np.nan
    estimate = dle.estimate(predictions[:60], window)
    assert estimate["n"] == 60 and 0 < estimate["mae"] <= estimate["rmse"] < 2000


def test_dle_needs_the_feature_rows() -> None:
    frame, y = _heteroscedastic(200, 1)
    with pytest.raises(ValueError, match="feature rows"):
        RegressionDLE().fit(y, y)
    with pytest.raises(ValueError, match="lacks feature columns"):
        RegressionDLE(features=["w", "v"]).fit(y, y, frame)
    with pytest.raises(ValueError, match="learning_rate"):
        RegressionDLE(learning_rate=0)

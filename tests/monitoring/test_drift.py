"""Whole-window drift: MLBox's formula, its extremes, detection and attribution of each shift."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from streamfit.config import Settings
from streamfit.datasets.adult import CONTRACT, FEATURE_COLUMNS
from streamfit.monitoring import (
    DomainClassifier,
    DriftDetector,
    alarm_budget,
    auc_with_z,
    detector_from_settings,
    drift_score,
    drifting_features,
)

from .conftest import SHIFTS


@pytest.fixture(scope="module")
def detector(reference: pd.DataFrame) -> DriftDetector:
    """The monitor's own detector: the default settings, at its share of the false-alarm budget
    (about 0.002, not drift_alpha's 0.01), on windows of the default 1,000 rows."""
    return detector_from_settings(Settings(), CONTRACT, monitor=True).fit(reference)


def test_the_detector_here_is_the_monitors(detector: DriftDetector) -> None:
    assert detector.alpha == pytest.approx(alarm_budget(Settings(), CONTRACT).window_tests)
    assert detector.alpha < Settings().drift_alpha


def test_drift_formula_on_fold_aucs() -> None:
    assert drift_score([0.8, 0.7, 0.75]) == pytest.approx(0.5)
    assert drift_score([0.2, 0.3, 0.25]) == pytest.approx(0.5)  # inverted classifier drifts too
    assert drift_score([0.5, 0.5]) == 0.0
    assert drift_score([1.0, 1.0]) == 1.0


@pytest.mark.parametrize("classifier", ["lightgbm", "random_forest"])
def test_drift_matches_direct_computation_from_fold_aucs(classifier: str) -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (600, 3)), rng.normal(0.3, 1, (400, 3))])
    y = np.r_[np.zeros(600), np.ones(400)].astype(int)
    domain = DomainClassifier(classifier, n_folds=3, seed=7)
    result = domain.score(x, y, ["a", "b", "c"], [])
    direct = []
    for train, test in StratifiedKFold(3, shuffle=True, random_state=7).split(x, y):
        proba, _ = domain._fit_predict(x[train], y[train], x[test], [])
        direct.append(roc_auc_score(y[test], proba))
    assert result.fold_aucs == pytest.approx(direct)
    mean = np.mean(direct)
    assert result.drift == pytest.approx((max(mean, 1 - mean) - 0.5) * 2)


def test_auc_z_matches_sklearn_and_mann_whitney() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(y * 0.2, 1), 1)  # rounded: ties must be handled
    auc, z = auc_with_z(y, scores)
    assert auc == pytest.approx(roc_auc_score(y, scores))
    expected = stats.mannwhitneyu(scores[y == 1], scores[y == 0], use_continuity=False)
    assert 2 * stats.norm.sf(abs(z)) == pytest.approx(expected.pvalue, rel=1e-6)


def test_identical_sets_score_near_zero(detector: DriftDetector, reference: pd.DataFrame) -> None:
    report = detector.score(reference)  # the very rows it was fitted on
    assert report.drift < 0.1
    assert not report.drifted
    assert all(f.score < 0.1 for f in report.features.values())


def test_disjoint_sets_score_near_one(detector: DriftDetector, reference: pd.DataFrame) -> None:
    window = reference.sample(1000, random_state=2).copy()
    window["age"] += 200  # nobody in the reference is that old
    report = detector.score(window)
    assert report.drift > 0.95
    assert report.drifted
    assert report.ranking()[0] == "age"
    assert report.features["age"].score > 0.95


def test_undrifted_test_window_is_not_flagged(
    detector: DriftDetector, adult_test: pd.DataFrame
) -> None:
    report = detector.score(adult_test.sample(1000, random_state=3))
    assert not report.drifted, report.table()


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_each_shift_is_detected_and_attributed(
    detector: DriftDetector, adult_test: pd.DataFrame, shift: str
) -> None:
    make, feature = SHIFTS[shift]
    report = detector.score(make(adult_test, 1000, seed=4))
    assert report.drifted, report.table()
    assert report.classifier_drifted
    assert report.ranking()[0] == feature, report.table()
    assert report.features[feature].drifted
    assert report.drifted_features[0] == feature


def test_event_has_exactly_the_documented_shape(
    detector: DriftDetector, adult_test: pd.DataFrame
) -> None:
    event = detector.score(adult_test.head(500), window_end=1234).to_event()
    assert set(event) == {
        "window_end", "drift", "drifted", "features", "sequential", "output", "labels"
    }  # fmt: skip
    assert event["sequential"]["drifted"] is False  # one-off score: no sequential layer
    assert event["window_end"] == 1234
    assert isinstance(event["drifted"], bool)
    assert set(event["features"]) == set(detector.kinds)
    for values in event["features"].values():
        assert set(values) == {"score", "p_value", "psi", "drifted"}
        assert isinstance(values["drifted"], bool)
    json.dumps(event, allow_nan=False)


def test_detector_round_trips_through_json(
    detector: DriftDetector, adult_test: pd.DataFrame
) -> None:
    again = DriftDetector.from_dict(json.loads(json.dumps(detector.to_dict(), allow_nan=False)))
    window = SHIFTS["older_users"][0](adult_test, 600, seed=5)
    assert again.score(window).to_event() == detector.score(window).to_event()


def test_missing_columns_and_values_are_tolerated(
    detector: DriftDetector, adult_test: pd.DataFrame
) -> None:
    window = adult_test.sample(400, random_state=6).drop(columns=["fnlwgt"]).reset_index(drop=True)
    window.loc[:50, "occupation"] = None
    report = detector.score(window)
    assert "fnlwgt" not in report.features
    # Twice the usual share of missing occupations is itself a shift, and the only one.
    assert report.drifted_features == ["occupation"], report.table()


def test_bh_correction_matches_definition() -> None:
    from streamfit.drift.detector import _correct

    p = [0.01, 0.04, 0.03, 0.2]
    assert _correct(p, "bh") == pytest.approx(stats.false_discovery_control(p))
    assert _correct(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.8])


def test_thresholder_drops_exactly_the_drifting_feature(
    reference: pd.DataFrame, adult_test: pd.DataFrame
) -> None:
    window = adult_test.sample(1000, random_state=7).copy()
    window["hours_per_week"] *= 1.5
    assert drifting_features(
        reference,
        window,
        0.2,
        detector=DriftDetector.for_contract(CONTRACT, classifier_null_runs=0),
    ) == ["hours_per_week"]


def test_report_renders_chart_and_html(detector: DriftDetector, adult_test: pd.DataFrame) -> None:
    report = detector.score(SHIFTS["rescaled_hours"][0](adult_test, 500, seed=8))
    assert report.chart_png().startswith(b"\x89PNG")
    page = report.to_html()
    assert 'data-feature="hours_per_week"' in page and "<svg" in page  # inline, no image file
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no network
    assert "hours_per_week" in report.table().splitlines()[1]


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="alpha"):
        DriftDetector(FEATURE_COLUMNS, alpha=2)
    with pytest.raises(ValueError, match="classifier"):
        DriftDetector(FEATURE_COLUMNS, classifier="svm")
    with pytest.raises(RuntimeError, match="not fitted"):
        DriftDetector(FEATURE_COLUMNS).score(pd.DataFrame({"age": [1.0]}))


def test_holm_correction_matches_definition() -> None:
    from streamfit.drift.detector import _correct

    # Sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, then made monotone: 0.04, 0.09, 0.09, 0.2.
    assert _correct([0.01, 0.04, 0.03, 0.2], "holm") == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert _correct([0.5, float("nan")], "holm")[1] != _correct([0.5, float("nan")], "holm")[1]


def test_integer_columns_with_few_levels_are_tested_on_counts(detector: DriftDetector) -> None:
    tests = {name: state["name"] for name, state in detector.fitted_tests.items()}
    assert tests["education_num"] == "chi2"  # 16 levels: KS on ties would be very conservative
    assert tests["age"] == "ks" and tests["workclass"] == "chi2"


def test_a_ten_point_share_change_is_caught_without_a_floor(
    reference: pd.DataFrame, adult_test: pd.DataFrame
) -> None:
    # The share of men falls from ~67 % to ~57 %: PSI ~0.04, which the old 0.1 floor silenced.
    male = (adult_test["gender"] == "Male").to_numpy()
    share = male.mean()
    weights = np.where(male, (share - 0.10) / share, (1 - share + 0.10) / (1 - share))
    window = adult_test.sample(1000, weights=weights, random_state=12).reset_index(drop=True)
    monitors = detector_from_settings(Settings(), CONTRACT, monitor=True)
    report = monitors.fit(reference).score(window)
    assert report.features["gender"].drifted and report.ranking()[0] == "gender"
    assert report.features["gender"].psi < 0.1
    assert report.features["gender"].reason.startswith("shifted: p = ")
    floored = DriftDetector.for_contract(
        CONTRACT, classifier_null_runs=0, reference_size=2000, psi_floor=0.1
    )
    gender = floored.fit(reference).score(window).features["gender"]
    assert not gender.drifted and "under the stated floor 0.1" in gender.reason

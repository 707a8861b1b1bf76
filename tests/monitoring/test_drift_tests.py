"""Contract suite for the drift-test family: every test, every kind it applies to."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from streamfit.drift._binning import Binning
from streamfit.monitoring import (
    ChiSquaredTest,
    DriftTest,
    KSTest,
    PSITest,
    drift_test_from_dict,
    get_drift_test,
)

CASES = [("ks", "numeric"), ("chi2", "numeric"), ("chi2", "categorical"), ("psi", "numeric"),
         ("psi", "categorical")]  # fmt: skip


def _columns(kind: str, seed: int, shifted: bool, n: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    if kind == "numeric":
        return pd.Series(rng.normal(1.0 if shifted else 0.0, 1.0, n))
    shares = [0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2]
    return pd.Series(rng.choice(["a", "b", "c"], size=n, p=shares))


@pytest.fixture(params=CASES, ids=[f"{n}-{k}" for n, k in CASES])
def fitted(request: pytest.FixtureRequest) -> DriftTest:
    name, kind = request.param
    return get_drift_test(name, kind).fit(_columns(kind, 0, False, 5000))


def test_same_distribution_is_not_significant(fitted: DriftTest) -> None:
    result = fitted.test(_columns(fitted.kind, 1, False, 1000))
    assert result.p_value > 0.001


def test_shift_is_significant(fitted: DriftTest) -> None:
    result = fitted.test(_columns(fitted.kind, 1, True, 1000))
    assert result.p_value < 1e-6


def test_state_round_trips_through_json(fitted: DriftTest) -> None:
    window = _columns(fitted.kind, 2, True, 300)
    again = drift_test_from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert type(again) is type(fitted)
    assert again.test(window) == fitted.test(window)


def test_factory_defaults_and_errors() -> None:
    assert isinstance(get_drift_test(None, "numeric"), KSTest)
    assert isinstance(get_drift_test(None, "categorical"), ChiSquaredTest)
    assert isinstance(get_drift_test("psi", "categorical"), PSITest)
    with pytest.raises(ValueError, match="unknown drift test"):
        get_drift_test("wasserstein")
    with pytest.raises(ValueError, match="does not apply"):
        get_drift_test("ks", "categorical")


def test_ks_matches_scipy_on_continuous_data() -> None:
    from scipy import stats

    rng = np.random.default_rng(3)
    reference, window = rng.normal(0, 1, 1500), rng.normal(0.1, 1, 700)
    result = KSTest(max_points=5000).fit(pd.Series(reference)).test(pd.Series(window))
    expected = stats.ks_2samp(window, reference)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=0.15)


def test_chi2_matches_contingency_table() -> None:
    from scipy import stats

    reference = pd.Series(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    window = pd.Series(["a"] * 20 + ["b"] * 20 + ["c"] * 10)
    result = ChiSquaredTest().fit(reference).test(window)
    expected = stats.chi2_contingency([[60, 30, 10], [20, 20, 10]], correction=False)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_numeric_bins_give_zero_its_own_bin() -> None:
    values = pd.Series([0.0] * 90 + list(range(1, 11)) + [np.nan])
    binning = Binning("numeric").fit(values)
    codes = binning.encode(pd.Series([0.0, np.nan, 1.0, 10.0, 1e9]))
    assert codes[0] == 1 and codes[1] == 0  # zero bin, missing bin
    assert 2 <= codes[2] < codes[3] <= codes[4] < binning.n_bins
    assert binning.edges  # deciles of the non-zero values, not of a column of zeros


def test_categorical_bins_have_other_unseen_and_missing() -> None:
    reference = pd.Series(["a"] * 600 + ["b"] * 399 + ["rare"])
    binning = Binning("categorical", min_share=0.01).fit(reference)
    codes = binning.encode(pd.Series(["a", "rare", "never-seen", None, "?"]))
    assert list(codes[1:]) == [2, 1, 0, 0]  # other, unseen, missing, '?' is missing
    assert binning.labels[codes[0]] == "a"


def test_chi2_pools_sparse_bins_so_one_stray_value_is_not_drift() -> None:
    reference = pd.Series(["a"] * 6000 + ["b"] * 3000 + ["c"] * 1000)
    test = ChiSquaredTest().fit(reference)
    calm = pd.Series(["a"] * 600 + ["b"] * 300 + ["c"] * 99 + ["never-seen"])
    assert test.test(calm).p_value > 0.5
    flood = pd.Series(["a"] * 500 + ["b"] * 270 + ["c"] * 80 + ["never-seen"] * 150)
    assert test.test(flood).p_value < 1e-6


def test_chi2_p_values_stay_honest_with_rare_categories() -> None:
    # Half the categories expect under one row per window: without pooling them the statistic's
    # null is far heavier-tailed than chi-squared and undrifted windows alarm.
    rng = np.random.default_rng(11)
    shares = np.r_[[0.4, 0.3, 0.2], np.full(20, 0.1 / 20)]
    names = [f"c{i}" for i in range(shares.size)]
    test = ChiSquaredTest(min_share=0.0).fit(pd.Series(rng.choice(names, 30_000, p=shares)))
    p_values = [test.test(pd.Series(rng.choice(names, 500, p=shares))).p_value for _ in range(400)]
    assert np.mean(np.array(p_values) < 0.05) <= 0.08
    assert np.mean(np.array(p_values) < 0.01) <= 0.025


def test_every_tested_cell_expects_enough_rows() -> None:
    from streamfit.drift._univariate import _pool_sparse_bins

    reference = np.array([1, 1, 1, 3, 4, 6, 200, 800], dtype=float)
    keep, pooled = _pool_sparse_bins(reference, 1000.0, 5.0)
    expected = 1000.0 * reference / reference.sum()
    assert np.all(expected[keep] >= 5.0)
    assert expected[pooled].sum() >= 5.0
    assert sorted(np.r_[keep, pooled]) == list(range(reference.size))

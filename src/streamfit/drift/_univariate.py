"""Univariate drift tests: Kolmogorov–Smirnov, chi-squared and the population stability index.

All three keep reference *summaries* (an ECDF or bin counts), never the reference rows, so a
window costs one sort or one ``bincount`` per feature whatever the reference size.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy import special, stats

from ._base import DriftTest, TestResult
from ._binning import Binning, _as_float


class KSTest(DriftTest):
    """Two-sample Kolmogorov–Smirnov test against a stored reference ECDF (numeric only).

    The ECDF is kept exactly when the reference has at most ``max_points`` distinct values (all
    Adult numerics but fnlwgt) and on a quantile grid otherwise (error at most 1/``max_points``).
    On discrete features KS is conservative, which errs on the side of fewer false alarms.
    """

    name: ClassVar[str] = "ks"
    kinds: ClassVar[tuple[str, ...]] = ("numeric",)

    def __init__(self, kind: str = "numeric", max_points: int = 2000) -> None:
        super().__init__(kind)
        if max_points < 10:
            raise ValueError(f"max_points must be at least 10, got {max_points}")
        self.max_points = max_points
        self.support: list[float] = []
        self.cdf: list[float] = []
        self.n_reference = 0

    def fit(self, reference: pd.Series) -> Self:
        values = np.sort(_as_float(reference))
        values = values[~np.isnan(values)]
        if values.size == 0:
            raise ValueError("the reference column has no numeric values")
        support = np.unique(values)
        if support.size > self.max_points:
            support = np.unique(np.quantile(values, np.linspace(0, 1, self.max_points + 1)))
        self.support = support.tolist()
        self.cdf = (np.searchsorted(values, support, side="right") / values.size).tolist()
        self.n_reference = int(values.size)
        return self

    def test(self, current: pd.Series) -> TestResult:
        x = np.sort(_as_float(current))
        x = x[~np.isnan(x)]
        if x.size == 0:
            return TestResult(float("nan"), float("nan"))
        support, cdf = np.asarray(self.support), np.asarray(self.cdf)
        points = np.union1d(support, x)
        index = np.searchsorted(support, points, side="right") - 1
        f_ref = np.where(index >= 0, cdf[np.clip(index, 0, None)], 0.0)
        f_cur = np.searchsorted(x, points, side="right") / x.size
        d = float(np.max(np.abs(f_ref - f_cur)))
        n_eff = x.size * self.n_reference / (x.size + self.n_reference)
        # Stephens' small-sample correction of the asymptotic Kolmogorov distribution.
        root = np.sqrt(n_eff)
        return TestResult(d, float(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * d)))


class _CountTest(DriftTest):
    """Shared state of the tests on binned counts."""

    def __init__(self, kind: str = "numeric", n_quantiles: int = 10, min_share: float = 0.005):
        super().__init__(kind)
        self.binning = Binning(kind, n_quantiles, min_share).to_dict()
        self.reference_counts: list[int] = []

    def fit(self, reference: pd.Series) -> Self:
        binning = Binning.from_dict(self.binning).fit(reference)
        self.binning = binning.to_dict()
        self.reference_counts = binning.counts(reference).tolist()
        self._binning = binning
        return self

    def _counts(self, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        if getattr(self, "_binning", None) is None:
            self._binning = Binning.from_dict(self.binning)
        return np.asarray(self.reference_counts, dtype=float), self._binning.counts(current)


class ChiSquaredTest(_CountTest):
    """Chi-squared test of homogeneity on the 2 x bins table (reference counts, window counts).

    A two-sample table rather than a goodness-of-fit test against reference shares: it accounts
    for the reference's own sampling noise and copes with bins the reference never saw.
    """

    name: ClassVar[str] = "chi2"

    def __init__(
        self,
        kind: str = "categorical",
        n_quantiles: int = 10,
        min_share: float = 0.005,
        min_expected: float = 5.0,
    ):
        super().__init__(kind, n_quantiles, min_share)
        if min_expected < 0:
            raise ValueError(f"min_expected must be >= 0, got {min_expected}")
        self.min_expected = min_expected

    def test(self, current: pd.Series) -> TestResult:
        reference, window = self._counts(current)
        return chi_squared_counts(reference, window, self.min_expected)


def chi_squared_counts(
    reference: np.ndarray, window: np.ndarray, min_expected: float = 5.0
) -> TestResult:
    """Chi-squared test of homogeneity of two count vectors over the same bins, sparse bins
    pooled (see :func:`_pool_sparse_bins`): the window test, and each span of the sequential
    scan (about 70 calls per check, hence Pearson's statistic written out for the 2 x k table:
    the same value as scipy's ``chi2_contingency(correction=False)``, a tenth of the cost)."""
    reference, window = np.asarray(reference, dtype=float), np.asarray(window, dtype=float)
    n_reference, n_window = reference.sum(), window.sum()
    if n_window == 0 or n_reference == 0:
        return TestResult(0.0, 1.0)
    keep, pooled = _pool_sparse_bins(reference, n_window, min_expected)
    reference_cells = np.r_[reference[keep], reference[pooled].sum()]
    window_cells = np.r_[window[keep], window[pooled].sum()]
    totals = reference_cells + window_cells
    used = totals > 0
    if used.sum() < 2:
        return TestResult(0.0, 1.0)
    n = n_reference + n_window
    # Both rows' (O - E)^2 / E summed: the reference row's deviation is the window's, negated.
    deviations = window_cells[used] - n_window * totals[used] / n
    scale = n * n / (n_reference * n_window)
    statistic = float(scale * np.sum(deviations * deviations / totals[used]))
    return TestResult(statistic, float(special.chdtrc(int(used.sum()) - 1, statistic)))


class PSITest(_CountTest):
    """Population stability index over the reference bins, for numeric and categorical features.

    PSI is an effect size (0.1 "moderate", 0.25 "large" by the usual rule of thumb); for small
    shifts n_eff * PSI is approximately chi-squared with bins - 1 degrees of freedom, which gives
    the p-value.
    """

    name: ClassVar[str] = "psi"

    def __init__(self, kind: str = "numeric", n_quantiles: int = 10, min_share: float = 0.005):
        super().__init__(kind, n_quantiles, min_share)

    def test(self, current: pd.Series) -> TestResult:
        reference, window = self._counts(current)
        used = (reference + window) > 0
        reference, window = reference[used], window[used]
        n_ref, n_cur = reference.sum(), window.sum()
        if n_cur == 0 or used.sum() < 2:
            return TestResult(0.0, 1.0)
        # Half a count per bin keeps the log finite for bins one side never saw.
        p = (reference + 0.5) / (n_ref + 0.5 * reference.size)
        q = (window + 0.5) / (n_cur + 0.5 * window.size)
        psi = float(np.sum((q - p) * np.log(q / p)))
        n_eff = n_ref * n_cur / (n_ref + n_cur)
        return TestResult(psi, float(stats.chi2.sf(n_eff * psi, reference.size - 1)))


def _pool_sparse_bins(
    reference: np.ndarray, n_window: float, min_expected: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split bins into those tested on their own and one pool, so that every cell the window is
    expected to fill holds at least ``min_expected`` rows (Cochran's rule: below it the
    chi-squared approximation of the statistic's null is too generous and rare categories raise
    false alarms). Every bin expecting fewer rows goes to the pool; if the pool itself still
    expects fewer, the next sparsest bins join it. Without pooling, one row of a country the
    reference never saw (expected ~0.03 rows) adds ~30 to the statistic; a flood still shows.
    """
    expected = n_window * reference / max(reference.sum(), 1.0)
    order = np.argsort(expected, kind="stable")
    sparse = int(np.sum(expected < min_expected))
    cumulative = np.cumsum(expected[order])
    enough = int(np.searchsorted(cumulative, min_expected)) + 1  # smallest pool reaching it
    size = min(max(sparse, enough), expected.size)
    return order[size:], order[:size]


_TESTS: dict[str, type[DriftTest]] = {t.name: t for t in (KSTest, ChiSquaredTest, PSITest)}
_DEFAULTS = {"numeric": "ks", "categorical": "chi2"}


def get_drift_test(name: str | None = None, kind: str = "numeric", **params: Any) -> DriftTest:
    """Return an unfitted test: ``None`` picks KS for numeric and chi-squared for categorical."""
    if kind not in _DEFAULTS:
        raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    name = name or _DEFAULTS[kind]
    if name not in _TESTS:
        raise ValueError(f"unknown drift test {name!r}: expected one of {sorted(_TESTS)}")
    return _TESTS[name](kind=kind, **params)


def drift_test_from_dict(state: dict[str, Any]) -> DriftTest:
    """Rebuild a fitted test saved with ``to_dict``."""
    return _TESTS[state["name"]].from_dict(state)

"""Drift of a window of requests against the reference (the served model's training data).

Two layers, both fitted once on the reference and cheap per window, whose p-values form one
family corrected together (Holm by default), so the chance that an undrifted window raises any
alarm is at most ``alpha``:

* per feature, a univariate test whose p-value is honest on these data: chi-squared on
  categories (and on integer columns with few levels) with sparse cells pooled until each expects
  5 rows, KS on the other numerics (with ties its p-value is conservative, never generous);
* the whole window, by MLBox's domain-classifier score (it catches changes in how features go
  together, which no univariate test sees); its analytic p-value is over-dispersed on real data
  (7 % of undrifted Adult windows below 0.01), so at fit time the classifier is run on windows of
  the reference itself and its z-score divided by the spread measured there.

Effect sizes (PSI per feature, the classifier's drift score) are reported beside the verdict. A
floor on them is off by default: a category share moving 50 % -> 40 % has a PSI of only ~0.04
and the old floor of 0.1 silenced it. Set one only to state a shift too small to matter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd
from scipy import stats

from ._base import DriftTest
from ._binning import Binning, _as_float, _as_text
from ._classifier import CLASSIFIERS, DomainClassifier, binned_feature_scores
from ._univariate import PSITest, drift_test_from_dict, get_drift_test
from .report import DriftReport, FeatureDrift

if TYPE_CHECKING:
    from ..config import Settings
    from ..contract import Contract

CORRECTIONS = ("holm", "bonferroni", "bh")
#: Numeric columns with at most this many distinct reference values (education_num has 16) are
#: tested by chi-squared on their levels: KS on a handful of tied values is very conservative.
MAX_LEVELS_FOR_COUNTS = 20


class DriftDetector:
    """Fit on reference rows, then ``score(window)`` returns a :class:`DriftReport`.

    ``features``: the columns to test; ``column_kinds``: ``numeric`` or ``categorical`` per
    column, where the dtype alone would mislead (a category coded as integers).
    :meth:`for_contract` takes both from a model's feature contract.
    """

    def __init__(
        self,
        features: Sequence[str],
        *,
        column_kinds: Mapping[str, str] | None = None,
        alpha: float = 0.01,
        correction: str = "holm",
        psi_floor: float = 0.0,
        drift_floor: float = 0.0,
        tests: Mapping[str, str] | None = None,
        classifier: str = "lightgbm",
        n_folds: int = 3,
        n_estimators: int = 50,
        reference_size: int = 5000,
        current_size: int = 5000,
        n_permutations: int = 0,
        classifier_null_runs: int = 20,
        n_quantiles: int = 10,
        min_share: float = 0.005,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
        if psi_floor < 0 or drift_floor < 0:
            raise ValueError("psi_floor and drift_floor must be >= 0")
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if classifier_null_runs < 0:
            raise ValueError(f"classifier_null_runs must be >= 0, got {classifier_null_runs}")
        if reference_size < 10 or current_size < 10:
            raise ValueError("reference_size and current_size must be at least 10")
        kinds = dict(column_kinds or {})
        unknown = sorted({k for k in kinds.values() if k not in ("numeric", "categorical")})
        if unknown:
            raise ValueError(f"column kinds must be numeric or categorical, got {unknown}")
        self.features = list(features)
        self.column_kinds = kinds
        self.alpha = alpha
        self.correction = correction
        self.psi_floor = psi_floor
        self.drift_floor = drift_floor
        self.tests = dict(tests or {})  # kind -> test name; missing kinds use the default
        self.classifier = classifier
        self.n_folds = n_folds
        self.n_estimators = n_estimators
        self.reference_size = reference_size
        self.current_size = current_size
        self.n_permutations = n_permutations
        self.classifier_null_runs = classifier_null_runs
        self.n_quantiles = n_quantiles
        self.min_share = min_share
        self.seed = seed
        self.n_jobs = n_jobs
        # Fitted state.
        self.kinds: dict[str, str] = {}
        self.fitted_tests: dict[str, dict[str, Any]] = {}
        self.fitted_psi: dict[str, dict[str, Any]] = {}
        self.sample: dict[str, list[Any]] = {}
        self.n_reference = 0
        self.classifier_null_scale = 1.0  # spread of the classifier's z on undrifted windows
        self._domain = DomainClassifier(
            classifier, n_folds, n_estimators, n_permutations, seed, n_jobs
        )
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, contract: Contract, *, alpha: float | None = None
    ) -> Self:
        """An unfitted detector configured by the ``drift_*`` settings, over ``contract``'s
        numeric and categorical columns; ``alpha`` overrides ``drift_alpha`` (the monitor's
        share of its false-alarm budget)."""
        return cls.for_contract(
            contract,
            alpha=settings.drift_alpha if alpha is None else alpha,
            correction=settings.drift_correction,
            psi_floor=settings.drift_psi_floor,
            drift_floor=settings.drift_score_floor,
            classifier=settings.drift_classifier,
            n_folds=settings.drift_folds,
            reference_size=settings.drift_reference_rows,
            current_size=max(settings.drift_window, 10),
            seed=settings.seed,
        )

    @classmethod
    def for_contract(cls, contract: Contract, **params: Any) -> Self:
        """A detector over a contract's numeric and categorical columns, of their declared
        kinds. Datetime columns are left out: their raw values are strings that a window of
        later requests always moves, which says nothing about the model's inputs."""
        kinds = {c.name: c.kind for c in contract.columns if c.kind in ("numeric", "categorical")}
        if not kinds:
            raise ValueError("the contract has no numeric or categorical column to watch")
        return cls(list(kinds), column_kinds=kinds, **params)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, reference: pd.DataFrame) -> Self:
        names = [n for n in self.features if n in reference.columns]
        if not names:
            raise ValueError("the reference has none of the feature columns")
        self.kinds = {n: self.column_kinds.get(n) or _kind(reference[n]) for n in names}
        self.fitted_tests, self.fitted_psi = {}, {}
        for name, kind in self.kinds.items():
            test_name, params = self._test_for(reference[name], kind)
            test = get_drift_test(test_name, kind, **params)
            self.fitted_tests[name] = test.fit(reference[name]).to_dict()
            psi = PSITest(kind, self.n_quantiles, self.min_share).fit(reference[name])
            self.fitted_psi[name] = psi.to_dict()
        rows = reference[names]
        if len(rows) > self.reference_size:
            rows = rows.sample(self.reference_size, random_state=self.seed)
        self.sample = {
            n: (_as_float(rows[n]).tolist() if k == "numeric" else rows[n].astype(object).tolist())
            for n, k in self.kinds.items()
        }
        self.sample = _jsonable(self.sample)
        self.n_reference = len(reference)
        self._cache = {}
        self.classifier_null_scale = 1.0
        self.classifier_null_scale = self._classifier_null_scale(reference)
        return self

    def _test_for(self, column: pd.Series, kind: str) -> tuple[str, dict[str, Any]]:
        """The test of one feature and its parameters (a name in ``tests`` wins)."""
        name = self.tests.get(kind)
        levels = self.n_quantiles
        if name is None and kind == "numeric":
            distinct = int(pd.Series(_as_float(column)).nunique())
            name = "chi2" if distinct <= MAX_LEVELS_FOR_COUNTS else "ks"
            levels = max(levels, distinct)
        name = name or "chi2"
        if name == "ks":
            return name, {}
        return name, {"n_quantiles": levels, "min_share": self.min_share}

    def _classifier_null_scale(self, reference: pd.DataFrame) -> float:
        """Root mean square of the classifier's Stouffer z over windows drawn from the reference
        (rows in both sets are left out of the reference side, so these are undrifted windows);
        at least 1, so the calibration can only make the test stricter."""
        if self.classifier_null_runs == 0:
            return 1.0
        rng = np.random.default_rng(self.seed + 2)
        size = min(self.current_size, 1000, max(len(reference) // 4, 10))
        zs = []
        for _ in range(self.classifier_null_runs):
            window = reference.sample(size, random_state=int(rng.integers(2**31)))
            result = self._classifier_scores(window, list(self.kinds), self._fitted(), False)[1]
            if result:
                zs.append(float(stats.norm.isf(np.clip(result["p_value"], 1e-300, 1.0))))
        return max(1.0, float(np.sqrt(np.mean(np.square(zs))))) if zs else 1.0

    def _fitted(self) -> dict[str, Any]:
        """Objects rebuilt from the JSON state, once."""
        if not self.kinds:
            raise RuntimeError("DriftDetector is not fitted: call fit(reference) first")
        if not self._cache:
            tests = {n: drift_test_from_dict(s) for n, s in self.fitted_tests.items()}
            psi = {n: drift_test_from_dict(s) for n, s in self.fitted_psi.items()}
            binnings = {n: Binning.from_dict(s["binning"]) for n, s in self.fitted_psi.items()}
            sample = pd.DataFrame(self.sample)
            self._cache = {
                "tests": tests,
                "psi": psi,
                "binnings": binnings,
                "x": self._matrix(sample, binnings),
                "codes": np.column_stack([binnings[n].encode(sample[n]) for n in self.kinds]),
                "hashes": self._hashes(sample),
            }
        return self._cache

    def _matrix(self, frame: pd.DataFrame, binnings: Mapping[str, Binning]) -> np.ndarray:
        """Classifier input: raw numerics, categories as their bin codes."""
        columns = [
            _as_float(frame[n]) if k == "numeric" else binnings[n].encode(frame[n]).astype(float)
            for n, k in self.kinds.items()
        ]
        return np.column_stack(columns)

    def _hashes(self, frame: pd.DataFrame) -> np.ndarray:
        """One hash per row over the canonical feature values, to spot rows in both sets."""
        canonical = pd.DataFrame(
            {
                n: _as_float(frame[n]) if k == "numeric" else _as_text(frame[n]).astype(object)
                for n, k in self.kinds.items()
            }
        )
        return pd.util.hash_pandas_object(canonical, index=False).to_numpy()

    # -- scoring -----------------------------------------------------------------------------
    def feature_p_values(self, current: pd.DataFrame) -> dict[str, float]:
        """Uncorrected p-value of each feature's test on ``current`` (no classifier): the cheap
        per-check statistic the sequential monitor accumulates."""
        fitted = self._fitted()
        current = current.reset_index(drop=True)
        return {
            n: fitted["tests"][n].test(current[n]).p_value
            for n in self.kinds
            if n in current.columns
        }

    def feature_counts(self, current: pd.DataFrame) -> dict[str, list[int]]:
        """Each feature's count per reference bin (the PSI bins: deciles and a zero bin for
        numerics, frequent categories for the rest) in ``current``: what the sequential scan
        accumulates across checks. Features absent from ``current`` are left out."""
        binnings = self._fitted()["binnings"]
        current = current.reset_index(drop=True)
        return {
            n: binnings[n].counts(current[n]).tolist() for n in self.kinds if n in current.columns
        }

    @property
    def reference_counts(self) -> dict[str, list[float]]:
        """The reference's count per bin of each feature, aligned with :meth:`feature_counts`."""
        return {n: list(state["reference_counts"]) for n, state in self.fitted_psi.items()}

    def score(self, current: pd.DataFrame, window_end: int | str | None = None) -> DriftReport:
        """Compare a window with the reference."""
        started = time.perf_counter()
        fitted = self._fitted()
        names = [n for n in self.kinds if n in current.columns]
        if not names:
            raise ValueError("the window has none of the reference's feature columns")
        current = current.reset_index(drop=True)

        raw = {n: fitted["tests"][n].test(current[n]) for n in names}
        psi = {n: fitted["psi"][n].test(current[n]).statistic for n in names}

        window = current
        if len(window) > self.current_size:
            # Not ``seed``: the same seed would pick the same row positions as the reference
            # sample, and a window taken from the reference would then contain all of it.
            window = window.sample(self.current_size, random_state=self.seed + 1)
        scores, classifier = self._classifier_scores(window, names, fitted)
        # One family: every feature's test and the classifier's, corrected together.
        family = [raw[n].p_value for n in names] + [classifier.get("p_value", math.nan)]
        adjusted = _correct(family, self.correction)
        n_tests = sum(not math.isnan(p) for p in family)

        features = {}
        for name, p_value in zip(names, adjusted, strict=False):
            reference_counts = np.asarray(fitted["psi"][name].reference_counts, dtype=float)
            current_counts = fitted["binnings"][name].counts(current[name]).astype(float)
            features[name] = FeatureDrift(
                name=name,
                kind=self.kinds[name],
                test=fitted["tests"][name].name,
                score=scores.get(name, math.nan),
                statistic=raw[name].statistic,
                p_value=p_value,
                psi=psi[name],
                drifted=bool(p_value < self.alpha and psi[name] >= self.psi_floor),
                raw_p_value=raw[name].p_value,
                reason=self._reason(p_value, psi[name], n_tests),
                bins=fitted["binnings"][name].labels,
                reference_shares=_shares(reference_counts),
                current_shares=_shares(current_counts),
            )
        classifier_p = adjusted[-1]
        classifier_drifted = bool(
            classifier_p < self.alpha and classifier.get("drift", 0.0) >= self.drift_floor
        )
        return DriftReport(
            window_end=window_end if window_end is not None else len(current),
            drift=classifier.get("drift", math.nan),
            drifted=classifier_drifted or any(f.drifted for f in features.values()),
            features=features,
            auc=classifier.get("auc", math.nan),
            p_value=classifier_p,
            classifier_drifted=classifier_drifted,
            fold_aucs=classifier.get("fold_aucs", []),
            importance=classifier.get("importance", {}),
            n_reference=self.n_reference,
            n_current=len(current),
            alpha=self.alpha,
            seconds=time.perf_counter() - started,
            correction=self.correction,
        )

    def _reason(self, p_value: float, psi: float, n_tests: int) -> str:
        """The verdict of one feature in words."""
        if math.isnan(p_value):
            return "not tested: no values in the window"
        corrected = f"p = {p_value:.2g} after the {self.correction} correction over {n_tests} tests"
        if p_value >= self.alpha:
            return f"no evidence of a shift: {corrected}, not below alpha {self.alpha:g}"
        if psi < self.psi_floor:
            return (
                f"a real but small shift: {corrected} is below alpha {self.alpha:g}, but PSI "
                f"{psi:.3f} is under the stated floor {self.psi_floor:g} (too small to matter)"
            )
        return f"shifted: {corrected} is below alpha {self.alpha:g} (PSI {psi:.3f})"

    def _classifier_scores(
        self,
        window: pd.DataFrame,
        names: list[str],
        fitted: dict[str, Any],
        per_feature: bool = True,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        filled = window.reindex(columns=list(self.kinds))
        # A reference row that is also in the window (same file on both sides, or a window of
        # training rows) sits in both classes; the classifier then learns the opposite of the
        # truth on it and an identical pair of sets would look drifted. Leave such rows out.
        keep = ~np.isin(fitted["hashes"], self._hashes(filled))
        n_ref = int(keep.sum())
        if len(window) < 2 * self.n_folds or n_ref < 2 * self.n_folds:
            return {}, {}  # too few rows for stratified folds: per-feature tests still run
        columns = [list(self.kinds).index(n) for n in names]
        binnings = fitted["binnings"]
        x = np.vstack([fitted["x"][keep], self._matrix(filled, binnings)])[:, columns]
        y = np.r_[np.zeros(n_ref, dtype=np.int8), np.ones(len(window), dtype=np.int8)]
        categorical = [i for i, n in enumerate(names) if self.kinds[n] == "categorical"]
        result = vars(self._domain.score(x, y, names, categorical))
        # Calibrated one-sided p-value: the z-score rescaled by its spread on undrifted windows.
        z = stats.norm.isf(np.clip(result["p_value"], 1e-300, 1.0))
        result["p_value"] = float(stats.norm.sf(z / self.classifier_null_scale))
        if not per_feature:
            return {}, result
        window_codes = np.column_stack([binnings[n].encode(filled[n]) for n in self.kinds])
        codes = np.vstack([fitted["codes"][keep], window_codes])[:, columns]
        scores = binned_feature_scores(
            codes, y, [binnings[n].n_bins for n in names], self.n_folds, self.seed
        )
        return dict(zip(names, scores, strict=True)), result

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Self:
        state = dict(state)
        keys = ("kinds", "fitted_tests", "fitted_psi", "sample", "classifier_null_scale")
        fitted = {k: state.pop(k) for k in keys if k in state}
        n_reference = state.pop("n_reference")
        if state.get("features") is None:  # saved before the columns were always named
            state["features"] = list(fitted.get("kinds", {}))
        detector = cls(**state)
        detector.__dict__.update(fitted)
        detector.n_reference = n_reference
        return detector


def drifting_features(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    threshold: float = 0.6,
    *,
    detector: DriftDetector,
) -> list[str]:
    """Features whose per-feature drift score reaches ``threshold`` (MLBox's drift thresholder),
    scored by ``detector`` (unfitted) fitted on ``reference``.

    The trainer leaves these out for a drift-aware retrain. MLBox's default threshold is 0.6.
    """
    detector.fit(reference)
    report = detector.score(current)
    return [n for n in report.ranking() if _ge(report.features[n].score, threshold)]


def _ge(value: float, threshold: float) -> bool:
    return not math.isnan(value) and value >= threshold


def _kind(column: pd.Series) -> str:
    """A column's kind when none is declared: numbers are numeric, anything else categorical."""
    return "numeric" if pd.api.types.is_numeric_dtype(column) else "categorical"


def _correct(p_values: Sequence[float], method: str) -> list[float]:
    """Holm, Bonferroni or Benjamini–Hochberg adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    valid = ~np.isnan(p)
    m = int(valid.sum())
    adjusted = np.full(p.shape, np.nan)
    if m == 0:
        return adjusted.tolist()
    q = p[valid]
    if method == "bonferroni":
        adjusted[valid] = np.minimum(q * m, 1.0)
    elif method == "holm":
        # Step-down: the k-th smallest p-value is multiplied by m - k + 1; same family-wise
        # guarantee as Bonferroni, never less powerful.
        order = np.argsort(q)
        scaled = np.maximum.accumulate(q[order] * (m - np.arange(m)))
        result = np.empty(m)
        result[order] = np.minimum(scaled, 1.0)
        adjusted[valid] = result
    else:
        order = np.argsort(q)
        scaled = q[order] * m / np.arange(1, m + 1)
        scaled = np.minimum.accumulate(scaled[::-1])[::-1]
        result = np.empty(m)
        result[order] = np.minimum(scaled, 1.0)
        adjusted[valid] = result
    return adjusted.tolist()


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return (counts / total).tolist() if total else [0.0] * counts.size


def _jsonable(sample: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """NaN is not JSON: store missing values as None."""
    return {n: [None if pd.isna(v) else v for v in vals] for n, vals in sample.items()}


__all__ = ["CORRECTIONS", "DriftDetector", "DriftTest", "drifting_features"]

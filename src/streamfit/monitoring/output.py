"""Output and label drift: the served model's probabilities, and once labels arrive, the label
share and the realised calibration, each tested against the model's own reference predictions.

The reference is the champion's predictions on the fixed holdout (rows no model trained on, the
same rows its calibrator is fitted on). Output drift is often the most reliable single signal
(Rabanser et al., "Failing Loudly", 2019): it summarises every input shift the model reacts to.

* output: two-sample KS of the window's probabilities against the reference probabilities;
* label share: chi-squared on the 2 x 2 table of reference and window labels;
* realised calibration: the window's labels against its *calibrated* probabilities (the isotonic
  map fitted on the holdout), z = sum(y - q) / sqrt(sum q (1 - q)), two-sided. Under an unchanged
  P(y | x) the calibrated probabilities stay calibrated; a concept shift moves z.

The tests reuse the drift-test family, so their p-values are as honest as the features'.
Per task (:func:`output_drift_for`): :class:`OutputDrift` is the binary one above;
:class:`MulticlassOutputDrift` tests the predicted class distribution (chi-squared) and each
class's probability (KS), Bonferroni over the k + 1 tests, and the label shares (chi-squared);
:class:`RegressionOutputDrift` tests the predicted values (KS), and once labels arrive the label
values and the residuals y - prediction (KS each: a concept shift moves the residuals).
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import stats

from ..drift._univariate import ChiSquaredTest, KSTest, drift_test_from_dict
from .performance import ProbabilityCalibrator, expected_calibration_error


class OutputDrift:
    """Binary: fitted on reference probabilities and labels; state is plain JSON types."""

    task = "binary"

    def __init__(self) -> None:
        self.probability_test: dict[str, Any] = {}
        self.label_test: dict[str, Any] = {}
        self.calibrator: dict[str, Any] = {}
        self.reference_mean = math.nan
        self.reference_rate = math.nan
        self.reference_shares: list[float] = []  # for the report's chart, ten equal bins
        self._cache: dict[str, Any] = {}

    def fit(self, probabilities: np.ndarray, labels: np.ndarray | None = None) -> Self:
        p = np.asarray(probabilities, dtype=float)
        if p.size < 10:
            raise ValueError("output drift needs at least 10 reference probabilities")
        self.probability_test = KSTest().fit(pd.Series(p)).to_dict()
        self.reference_mean = float(p.mean())
        self.reference_shares = _shares(p)
        if labels is not None:
            y = np.asarray(labels, dtype=int)
            self.label_test = ChiSquaredTest("categorical").fit(_label_text(y)).to_dict()
            self.calibrator = ProbabilityCalibrator().fit(p, y).to_dict()
            self.reference_rate = float(y.mean())
        self._cache = {}
        return self

    def _tests(self) -> dict[str, Any]:
        if not self.probability_test:
            raise RuntimeError("OutputDrift is not fitted: call fit(probabilities) first")
        if not self._cache:
            self._cache = {
                "probability": drift_test_from_dict(self.probability_test),
                "label": drift_test_from_dict(self.label_test) if self.label_test else None,
                "calibrator": (
                    ProbabilityCalibrator.from_dict(self.calibrator) if self.calibrator else None
                ),
            }
        return self._cache

    def test_output(self, probabilities: np.ndarray, alpha: float) -> dict[str, Any] | None:
        """The window's probabilities against the reference's; None without any."""
        p = np.asarray(probabilities, dtype=float)
        p = p[~np.isnan(p)]
        if p.size == 0:
            return None
        result = self._tests()["probability"].test(pd.Series(p))
        return {
            "n": int(p.size),
            "statistic": float(result.statistic),
            "p_value": float(result.p_value),
            "drifted": bool(result.p_value < alpha),
            "mean": float(p.mean()),
            "reference_mean": self.reference_mean,
            "shares": _shares(p),
            "reference_shares": list(self.reference_shares),
        }

    def test_labels(
        self, probabilities: np.ndarray, labels: np.ndarray, alpha: float
    ) -> dict[str, Any] | None:
        """Label share and realised calibration of the labelled rows; None without labels or a
        labelled reference. ``alpha`` applies to each of the two tests."""
        tests = self._tests()
        p, y = np.asarray(probabilities, dtype=float), np.asarray(labels, dtype=float)
        known = ~(np.isnan(p) | np.isnan(y))
        p, y = p[known], y[known].astype(int)
        if y.size == 0 or tests["label"] is None:
            return None
        share = tests["label"].test(_label_text(y))
        q = tests["calibrator"].transform(p)
        variance = float(np.sum(q * (1 - q)))
        z = float(np.sum(y - q) / math.sqrt(variance)) if variance > 0 else 0.0
        calibration_p = float(2 * stats.norm.sf(abs(z)))
        return {
            "n": int(y.size),
            "positive_rate": float(y.mean()),
            "reference_rate": self.reference_rate,
            "p_value": float(share.p_value),
            "calibration_z": z,
            "calibration_p_value": calibration_p,
            "calibration_error": float(expected_calibration_error(y, q)),
            "drifted": bool(share.p_value < alpha or calibration_p < alpha),
        }

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        output = cls()
        output.__dict__.update(state)
        return output


class _TaskOutputDrift:
    """Shared plumbing of the multiclass and regression output tests: fitted tests kept as
    JSON state, rebuilt once."""

    task = ""

    def __init__(self) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        self.reference: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}

    def _fitted(self, name: str) -> Any:
        if not self.tests:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(predictions) first")
        if name not in self.tests:
            return None
        if name not in self._cache:
            self._cache[name] = drift_test_from_dict(self.tests[name])
        return self._cache[name]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        output = cls()
        output.__dict__.update(state)
        return output


class MulticlassOutputDrift(_TaskOutputDrift):
    """Multiclass: predictions are (n, k) probability matrices, labels class indices."""

    task = "multiclass"

    def fit(self, probabilities: np.ndarray, labels: np.ndarray | None = None) -> Self:
        p = _class_matrix(probabilities)
        if p.shape[0] < 10:
            raise ValueError("output drift needs at least 10 reference predictions")
        k = p.shape[1]
        predicted = p.argmax(axis=1)
        self.tests = {"class": ChiSquaredTest("categorical").fit(_classes(predicted)).to_dict()}
        for c in range(k):
            self.tests[f"p{c}"] = KSTest().fit(pd.Series(p[:, c])).to_dict()
        self.reference = {
            "n_classes": k,
            "shares": _class_shares(predicted, k),
            "confidence": float(p.max(axis=1).mean()),
        }
        if labels is not None:
            y = np.asarray(labels, dtype=int)
            self.tests["label"] = ChiSquaredTest("categorical").fit(_classes(y)).to_dict()
            self.reference["label_shares"] = _class_shares(y, k)
        self._cache = {}
        return self

    def test_output(self, probabilities: np.ndarray, alpha: float) -> dict[str, Any] | None:
        """Predicted classes and each class's probability against the reference's; None
        without any prediction."""
        self._fitted("class")
        k = int(self.reference["n_classes"])
        p = _class_matrix(probabilities, k)
        p = p[~np.isnan(p).any(axis=1)]
        if p.shape[0] == 0:
            return None
        predicted = p.argmax(axis=1)
        shares = self._fitted("class").test(_classes(predicted))
        per_class = [self._fitted(f"p{c}").test(pd.Series(p[:, c])).p_value for c in range(k)]
        p_value = min(1.0, (k + 1) * min(shares.p_value, *per_class))  # Bonferroni, k + 1 tests
        return {
            "task": self.task,
            "test": "chi-squared on the predicted class, KS per class probability",
            "n": int(p.shape[0]),
            "statistic": float(shares.statistic),
            "p_value": float(p_value),
            "class_p_value": float(shares.p_value),
            "drifted": bool(p_value < alpha),
            "mean": float(p.max(axis=1).mean()),
            "reference_mean": float(self.reference["confidence"]),
            "bins": [str(c) for c in range(k)],
            "shares": _class_shares(predicted, k),
            "reference_shares": list(self.reference["shares"]),
        }

    def test_labels(
        self, probabilities: np.ndarray, labels: np.ndarray, alpha: float
    ) -> dict[str, Any] | None:
        """The label shares against the reference's; None without labels or a labelled
        reference."""
        test = self._fitted("label")
        y = np.asarray(labels, dtype=float)
        y = y[~np.isnan(y)].astype(int)
        if y.size == 0 or test is None:
            return None
        k = int(self.reference["n_classes"])
        result = test.test(_classes(y))
        return {
            "task": self.task,
            "n": int(y.size),
            "p_value": float(result.p_value),
            "drifted": bool(result.p_value < alpha),
            "bins": [str(c) for c in range(k)],
            "shares": _class_shares(y, k),
            "reference_shares": list(self.reference["label_shares"]),
        }


class RegressionOutputDrift(_TaskOutputDrift):
    """Regression: predictions and labels are values."""

    task = "regression"

    def fit(self, values: np.ndarray, labels: np.ndarray | None = None) -> Self:
        v = np.asarray(values, dtype=float)
        if v.ndim != 1 or v.size < 10:
            raise ValueError("output drift needs at least 10 reference predicted values")
        self.tests = {"value": KSTest().fit(pd.Series(v)).to_dict()}
        edges = np.unique(np.quantile(v, np.linspace(0, 1, 11)))
        self.reference = {
            "mean": float(v.mean()),
            "edges": edges.tolist(),
            "shares": _value_shares(v, edges),
        }
        if labels is not None:
            y = np.asarray(labels, dtype=float)
            self.tests["label"] = KSTest().fit(pd.Series(y)).to_dict()
            self.tests["residual"] = KSTest().fit(pd.Series(y - v)).to_dict()
            self.reference["label_mean"] = float(np.nanmean(y))
            self.reference["residual_mean"] = float(np.nanmean(y - v))
        self._cache = {}
        return self

    def test_output(self, values: np.ndarray, alpha: float) -> dict[str, Any] | None:
        """The predicted values against the reference's (KS); None without any."""
        test = self._fitted("value")
        v = np.asarray(values, dtype=float)
        v = v[~np.isnan(v)]
        if v.size == 0:
            return None
        result = test.test(pd.Series(v))
        edges = np.asarray(self.reference["edges"])
        return {
            "task": self.task,
            "test": "Kolmogorov-Smirnov on the predicted values",
            "n": int(v.size),
            "statistic": float(result.statistic),
            "p_value": float(result.p_value),
            "drifted": bool(result.p_value < alpha),
            "mean": float(v.mean()),
            "reference_mean": float(self.reference["mean"]),
            "bins": [f"{a:.4g}-{b:.4g}" for a, b in zip(edges[:-1], edges[1:], strict=True)],
            "shares": _value_shares(v, edges),
            "reference_shares": list(self.reference["shares"]),
        }

    def test_labels(
        self, values: np.ndarray, labels: np.ndarray, alpha: float
    ) -> dict[str, Any] | None:
        """The label values and the residuals against the reference's (KS each, ``alpha``
        each); None without labels or a labelled reference."""
        label_test, residual_test = self._fitted("label"), self._fitted("residual")
        v, y = np.asarray(values, dtype=float), np.asarray(labels, dtype=float)
        known = ~(np.isnan(v) | np.isnan(y))
        v, y = v[known], y[known]
        if y.size == 0 or label_test is None:
            return None
        labels_result = label_test.test(pd.Series(y))
        residual_result = residual_test.test(pd.Series(y - v))
        return {
            "task": self.task,
            "n": int(y.size),
            "p_value": float(labels_result.p_value),
            "mean": float(y.mean()),
            "reference_mean": float(self.reference["label_mean"]),
            "residual_p_value": float(residual_result.p_value),
            "residual_mean": float((y - v).mean()),
            "reference_residual_mean": float(self.reference["residual_mean"]),
            "drifted": bool(labels_result.p_value < alpha or residual_result.p_value < alpha),
        }


OUTPUT_DRIFTS: dict[str, type[Any]] = {
    "binary": OutputDrift,
    "multiclass": MulticlassOutputDrift,
    "regression": RegressionOutputDrift,
}


def output_drift_for(task: str) -> OutputDrift | MulticlassOutputDrift | RegressionOutputDrift:
    """An unfitted output-drift test for ``task``; all share ``fit(predictions, labels)``,
    ``test_output(predictions, alpha)`` and ``test_labels(predictions, labels, alpha)``."""
    if task not in OUTPUT_DRIFTS:
        raise ValueError(f"task must be one of {tuple(OUTPUT_DRIFTS)}, got {task!r}")
    return OUTPUT_DRIFTS[task]()


def _label_text(y: np.ndarray) -> pd.Series:
    return pd.Series(np.where(np.asarray(y) == 1, "1", "0"))


def _class_matrix(p: np.ndarray, k: int | None = None) -> np.ndarray:
    matrix = np.asarray(p, dtype=float)
    if matrix.size == 0 and k is not None:
        return matrix.reshape(0, k)
    if matrix.ndim != 2 or matrix.shape[1] < 2 or (k is not None and matrix.shape[1] != k):
        width = f"{k}" if k is not None else "k >= 2"
        raise ValueError(f"multiclass predictions are an (n, {width}) matrix, got {matrix.shape}")
    return matrix


def _classes(indices: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(indices).astype(int).astype(str))


def _class_shares(indices: np.ndarray, k: int) -> list[float]:
    counts = np.bincount(np.asarray(indices, dtype=int), minlength=k)[:k]
    return (counts / max(counts.sum(), 1)).tolist()


def _value_shares(v: np.ndarray, edges: np.ndarray) -> list[float]:
    bins = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, max(edges.size - 2, 0))
    counts = np.bincount(bins, minlength=max(edges.size - 1, 1))
    return (counts / max(counts.sum(), 1)).tolist()


def _shares(p: np.ndarray) -> list[float]:
    counts = np.histogram(np.clip(p, 0.0, 1.0), bins=10, range=(0.0, 1.0))[0]
    return (counts / max(counts.sum(), 1)).tolist()


__all__ = [
    "OUTPUT_DRIFTS",
    "MulticlassOutputDrift",
    "OutputDrift",
    "RegressionOutputDrift",
    "output_drift_for",
]

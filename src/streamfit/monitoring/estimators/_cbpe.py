"""Confidence-based performance estimation (CBPE, NannyML): if a model's probabilities are
calibrated, its expected confusion matrix on unlabelled rows follows from them alone. It assumes
an unchanged P(y | x) and no shift into regions the model never saw: a drift alarm is the signal
to distrust it.

* binary: isotonic calibration on the reference, expected accuracy, F1 and ROC AUC (as before);
* multiclass: per class one-vs-rest, an isotonic map applied only where it lowers the
  cross-validated expected calibration error, rows renormalised; then expected accuracy, macro-F1
  and log loss (:func:`streamfit.challengers.estimates.expected_multiclass`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import numpy as np
from sklearn.model_selection import StratifiedKFold

from ...challengers.estimates import expected_multiclass
from ..performance import ProbabilityCalibrator, estimate_performance
from ._base import PerformanceEstimator, check_rows

if TYPE_CHECKING:
    import pandas as pd


class BinaryCBPE(PerformanceEstimator):
    """Binary CBPE: expected accuracy, F1 and ROC AUC at ``threshold``."""

    task = "binary"
    metrics = ("accuracy", "f1", "auc")

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.calibrator: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}

    def fit(
        self,
        predictions: np.ndarray,
        labels: np.ndarray,
        features: pd.DataFrame | None = None,
    ) -> Self:
        p, y = _probabilities(predictions), np.asarray(labels, dtype=int)
        check_rows(p, y)
        self.calibrator = ProbabilityCalibrator().fit(p, y).to_dict()
        self._cache = {}
        return self

    def estimate(
        self, predictions: np.ndarray, features: pd.DataFrame | None = None
    ) -> dict[str, float]:
        if not self.calibrator:
            raise RuntimeError("BinaryCBPE is not fitted: call fit(predictions, labels) first")
        if "calibrator" not in self._cache:
            self._cache["calibrator"] = ProbabilityCalibrator.from_dict(self.calibrator)
        p = _probabilities(predictions)
        return estimate_performance(p, self.threshold, self._cache["calibrator"])


class MulticlassCBPE(PerformanceEstimator):
    """Multiclass CBPE: expected accuracy, macro-F1 and log loss. ``n_folds``: folds of the
    cross-validated check that decides, per class, whether isotonic calibration helps."""

    task = "multiclass"
    metrics = ("accuracy", "macro_f1", "log_loss")

    def __init__(self, n_folds: int = 5, seed: int = 0) -> None:
        if n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {n_folds}")
        self.n_folds = n_folds
        self.seed = seed
        self.n_classes = 0
        self.calibrators: list[dict[str, Any] | None] = []  # per class; None: left as is
        self._cache: dict[str, Any] = {}

    def fit(
        self,
        predictions: np.ndarray,
        labels: np.ndarray,
        features: pd.DataFrame | None = None,
    ) -> Self:
        p, y = _matrix(predictions), np.asarray(labels, dtype=int)
        check_rows(p, y)
        if y.min() < 0 or y.max() >= p.shape[1]:
            raise ValueError(f"class indices must be within 0..{p.shape[1] - 1}")
        self.n_classes = p.shape[1]
        self.calibrators = [
            ProbabilityCalibrator().fit(p[:, c], y == c).to_dict()
            if self._calibration_helps(p[:, c], (y == c).astype(int))
            else None
            for c in range(self.n_classes)
        ]
        self._cache = {}
        return self

    def _calibration_helps(self, p: np.ndarray, y: np.ndarray) -> bool:
        """True when an isotonic map fitted on the other folds lowers this class's expected
        calibration error over the pooled out-of-fold rows (NannyML's rule). The ECE uses
        equal-mass bins: one-vs-rest probabilities crowd near 0, where equal-width bins would
        pool most rows into one and hide a miscalibration."""
        if y.size < 10 * self.n_folds or y.min() == y.max():
            return False
        folds = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.seed)
        if np.bincount(y).min() < self.n_folds:
            return False
        calibrated = np.empty_like(p)
        for train, test in folds.split(p, y):
            calibrated[test] = ProbabilityCalibrator().fit(p[train], y[train]).transform(p[test])
        return _equal_mass_ece(y, calibrated) < _equal_mass_ece(y, p)

    def calibrate(self, predictions: np.ndarray) -> np.ndarray:
        """The calibrated probability matrix: per-class maps, rows renormalised to sum to 1
        (a row all of whose calibrated values are 0 keeps the model's own)."""
        if not self.n_classes:
            raise RuntimeError("MulticlassCBPE is not fitted: call fit(predictions, labels) first")
        p = _matrix(predictions)
        if p.shape[1] != self.n_classes:
            raise ValueError(f"expected {self.n_classes} class probabilities, got {p.shape[1]}")
        if "maps" not in self._cache:
            self._cache["maps"] = [
                ProbabilityCalibrator.from_dict(s) if s is not None else None
                for s in self.calibrators
            ]
        q = np.column_stack(
            [
                p[:, c] if m is None else m.transform(p[:, c])
                for c, m in enumerate(self._cache["maps"])
            ]
        )
        total = q.sum(axis=1, keepdims=True)
        return np.where(total > 0, q / np.where(total > 0, total, 1.0), p)

    def estimate(
        self, predictions: np.ndarray, features: pd.DataFrame | None = None
    ) -> dict[str, float]:
        if not self.n_classes:
            raise RuntimeError("MulticlassCBPE is not fitted: call fit(predictions, labels) first")
        if np.asarray(predictions).size == 0:
            return self._empty()
        q = self.calibrate(predictions)
        return {"n": int(q.shape[0]), **expected_multiclass(_matrix(predictions), q)}


def _equal_mass_ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` bins of equally many rows, by probability."""
    order = np.argsort(p, kind="stable")
    gaps = [
        abs(float(y[rows].mean()) - float(p[rows].mean())) * rows.size
        for rows in np.array_split(order, n_bins)
        if rows.size
    ]
    return float(sum(gaps) / y.size)


def _probabilities(predictions: np.ndarray) -> np.ndarray:
    p = np.asarray(predictions, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"binary predictions are one probability per row, got shape {p.shape}")
    return p


def _matrix(predictions: np.ndarray) -> np.ndarray:
    p = np.asarray(predictions, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"multiclass predictions are an (n, k >= 2) matrix, got shape {p.shape}")
    return p


__all__ = ["BinaryCBPE", "MulticlassCBPE"]

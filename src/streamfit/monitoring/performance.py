"""Realised performance once labels arrive, and estimated performance before they do.

Realised metrics are plain scikit-learn computations over arrays, guarded for the small or
one-class windows a live service produces; :func:`realised_performance` picks the task's
(binary, multiclass, regression). The estimates of the other tasks are in
:mod:`streamfit.monitoring.estimators`; the binary one, here, is also its ``BinaryCBPE``.

The binary estimate follows confidence-based performance estimation (CBPE, NannyML): if the
probabilities are calibrated, a prediction with probability p is right with probability
max(p, 1 - p) at the 0.5 threshold, so the expected accuracy of a window is a mean over its
probabilities, and the expected ROC AUC follows from the expected numbers of correctly and
wrongly ordered (positive, negative) pairs. It assumes calibration,
an unchanged P(y | x), and no shift into regions the model never saw: a drift alarm is the
signal to distrust it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from ..challengers.estimates import EPS, expected_accuracy

METRICS = ("auc", "log_loss", "accuracy", "f1", "ece")
#: The realised metrics of each task (besides ``n``), as :func:`performance` returns them.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": (*METRICS, "positive_rate"),
    "multiclass": ("log_loss", "accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
}


def expected_calibration_error(
    y_true: Sequence[int] | np.ndarray, proba: Sequence[float] | np.ndarray, n_bins: int = 10
) -> float:
    """ECE over equal-width probability bins: sum of |bin share| * |mean label - mean proba|."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(proba, dtype=float)
    if y.size == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    gap = np.abs(
        np.bincount(bins, weights=y, minlength=n_bins)
        - np.bincount(bins, weights=p, minlength=n_bins)
    )
    return float(gap.sum() / y.size)  # n_b/n * |mean_b(y) - mean_b(p)| = |sum_b(y - p)| / n


def realised_metrics(
    y_true: Sequence[int] | np.ndarray,
    proba: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
) -> dict[str, float]:
    """AUC, log loss, accuracy, F1 and ECE of labelled predictions (NaN when undefined)."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"y_true and proba differ in shape: {y.shape} vs {p.shape}")
    nan = float("nan")
    if y.size == 0:
        return {"n": 0, **dict.fromkeys(METRICS, nan), "positive_rate": nan}
    predicted = (p >= threshold).astype(int)
    both = np.unique(y).size == 2  # AUC needs both classes
    return {
        "n": int(y.size),
        "auc": float(roc_auc_score(y, p)) if both else nan,
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, zero_division=0.0)),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(y.mean()),
    }


def multiclass_metrics(
    y_true: Sequence[int] | np.ndarray, proba: Sequence[Sequence[float]] | np.ndarray
) -> dict[str, float]:
    """Log loss, accuracy and macro-F1 of labelled multiclass predictions: ``y_true`` class
    indices 0..k-1, ``proba`` an (n, k) matrix. Every one of the k classes counts in the macro
    average, present in the window or not, so windows stay comparable."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] != y.size or y.ndim != 1:
        raise ValueError(
            f"need labels (n,) and probabilities (n, k >= 2), got {y.shape} and {p.shape}"
        )
    k = p.shape[1]
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"class indices must be within 0..{k - 1}")
    if y.size == 0:
        return {"n": 0, **dict.fromkeys(TASK_METRICS["multiclass"], float("nan"))}
    predicted = p.argmax(axis=1)
    chosen = np.clip(p[np.arange(y.size), y] / p.sum(axis=1), EPS, 1 - EPS)
    return {
        "n": int(y.size),
        "log_loss": float(-np.log(chosen).mean()),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(
            f1_score(y, predicted, labels=list(range(k)), average="macro", zero_division=0.0)
        ),
    }


def regression_metrics(
    y_true: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """RMSE, MAE and R² of labelled regression predictions (R² NaN under two rows or for a
    constant label, where it is undefined)."""
    y, v = np.asarray(y_true, dtype=float), np.asarray(predicted, dtype=float)
    if y.shape != v.shape or y.ndim != 1:
        raise ValueError(f"y_true and predicted differ in shape: {y.shape} vs {v.shape}")
    nan = float("nan")
    if y.size == 0:
        return {"n": 0, **dict.fromkeys(TASK_METRICS["regression"], nan)}
    constant = y.size < 2 or float(np.ptp(y)) == 0.0
    return {
        "n": int(y.size),
        "rmse": float(np.sqrt(np.mean((y - v) ** 2))),
        "mae": float(mean_absolute_error(y, v)),
        "r2": nan if constant else float(r2_score(y, v)),
    }


def realised_performance(
    task: str, y_true: Sequence[Any] | np.ndarray, predictions: Sequence[Any] | np.ndarray
) -> dict[str, float]:
    """Realised metrics of one task (:data:`TASK_METRICS`), with ``n``. Labels: class index
    (binary, multiclass) or value (regression); predictions: probability of the positive class
    (binary), an (n, k) probability matrix (multiclass) or the predicted value (regression)."""
    if task == "binary":
        return realised_metrics(y_true, predictions)
    if task == "multiclass":
        return multiclass_metrics(y_true, predictions)
    if task == "regression":
        return regression_metrics(y_true, predictions)
    raise ValueError(f"task must be one of {tuple(TASK_METRICS)}, got {task!r}")


def metrics_by_version(
    frame: pd.DataFrame,
    label: str = "label",
    proba: str = "probability",
    version: str = "model_version",
) -> dict[int, dict[str, float]]:
    """Realised metrics of each model version over its labelled rows (as from the store)."""
    rows = frame.dropna(subset=[label, proba, version])
    return {
        int(v): realised_metrics(group[label].to_numpy(), group[proba].to_numpy())
        for v, group in rows.groupby(version, sort=True)
    }


def window_metrics(
    frame: pd.DataFrame, window: int, label: str = "label", proba: str = "probability"
) -> dict[str, float]:
    """Realised metrics over the last ``window`` labelled rows (frame ordered oldest first)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    rows = frame.dropna(subset=[label, proba]).tail(window)
    return realised_metrics(rows[label].to_numpy(), rows[proba].to_numpy())


class ProbabilityCalibrator:
    """Isotonic map from the model's scores to calibrated probabilities, fitted on labelled
    reference predictions (a held-out set of the training data). The fitted curve is two plain
    lists, interpolated linearly like scikit-learn's ``IsotonicRegression.predict``."""

    def __init__(self) -> None:
        self.x: list[float] = []
        self.y: list[float] = []

    def fit(self, proba: Sequence[float] | np.ndarray, y_true: Sequence[int] | np.ndarray) -> Self:
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        isotonic.fit(np.asarray(proba, dtype=float), np.asarray(y_true, dtype=float))
        self.x = isotonic.X_thresholds_.tolist()
        self.y = isotonic.y_thresholds_.tolist()
        return self

    def transform(self, proba: Sequence[float] | np.ndarray) -> np.ndarray:
        if not self.x:
            raise RuntimeError("ProbabilityCalibrator is not fitted")
        return np.interp(np.asarray(proba, dtype=float), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        calibrator = cls()
        calibrator.x, calibrator.y = list(state["x"]), list(state["y"])
        return calibrator


def expected_roc_auc(
    proba: Sequence[float] | np.ndarray, scores: Sequence[float] | None = None
) -> float:
    """Expected ROC AUC when row i is positive with probability ``proba[i]``, independently.

    Ranks by ``scores`` (default: the probabilities). Ratio of expected correctly ordered
    (positive, negative) pairs, ties counting half, to expected pairs, in O(n log n).
    """
    p = np.asarray(proba, dtype=float)
    s = p if scores is None else np.asarray(scores, dtype=float)
    if p.size < 2:
        return float("nan")
    levels, group = np.unique(s, return_inverse=True)
    pos = np.bincount(group, weights=p, minlength=levels.size)
    neg = np.bincount(group, weights=1 - p, minlength=levels.size)
    self_pairs = np.bincount(group, weights=p * (1 - p), minlength=levels.size)
    below = np.cumsum(neg) - neg  # expected negatives with a strictly lower score
    ordered = np.sum(pos * below) + 0.5 * np.sum(pos * neg - self_pairs)
    pairs = pos.sum() * neg.sum() - self_pairs.sum()
    return float(ordered / pairs) if pairs > 0 else float("nan")


def estimate_performance(
    proba: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    calibrator: ProbabilityCalibrator | None = None,
) -> dict[str, float]:
    """CBPE: expected accuracy, F1 and ROC AUC of an unlabelled window from its probabilities."""
    scores = np.asarray(proba, dtype=float)
    if scores.size == 0:
        return {"n": 0, "accuracy": float("nan"), "f1": float("nan"), "auc": float("nan")}
    p = calibrator.transform(scores) if calibrator is not None else scores
    predicted = scores >= threshold
    true_pos = p[predicted].sum()
    false_pos = (1 - p[predicted]).sum()
    false_neg = p[~predicted].sum()
    denominator = 2 * true_pos + false_pos + false_neg
    return {
        "n": int(scores.size),
        "accuracy": expected_accuracy(scores, threshold, p),
        "f1": float(2 * true_pos / denominator) if denominator > 0 else float("nan"),
        "auc": expected_roc_auc(p, scores),
    }


__all__ = [
    "METRICS",
    "TASK_METRICS",
    "multiclass_metrics",
    "realised_performance",
    "regression_metrics",
    "ProbabilityCalibrator",
    "estimate_performance",
    "expected_calibration_error",
    "expected_roc_auc",
    "metrics_by_version",
    "realised_metrics",
    "window_metrics",
]

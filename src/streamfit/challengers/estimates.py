"""Label-free estimates from a model's own probabilities, shared by monitoring (its CBPE
performance estimates) and the live judge (a canary's accuracy floor before labels come), which
never import each other.

>>> expected_accuracy([0.9, 0.2, 0.5])
0.7333333333333334
>>> m = expected_multiclass([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
>>> round(m["accuracy"], 3), round(m["macro_f1"], 3), round(m["log_loss"], 3)
(0.75, 0.526, 0.72)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] inside a log loss, as scikit-learn does.
EPS = 1e-15


def expected_accuracy(
    proba: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    calibrated: np.ndarray | None = None,
) -> float:
    """If the probabilities are calibrated, a prediction with probability p is right with
    probability p when it says 1 (p >= threshold) and 1 - p otherwise: the window's expected
    accuracy is the mean of that (NaN for an empty window). ``calibrated``: recalibrated
    probabilities to use for p (the decisions stay those of ``proba``)."""
    scores = np.asarray(proba, dtype=float)
    if scores.size == 0:
        return float("nan")
    p = scores if calibrated is None else np.asarray(calibrated, dtype=float)
    return float(np.mean(np.where(scores >= threshold, p, 1 - p)))


def expected_multiclass(
    proba: Sequence[Sequence[float]] | np.ndarray,
    calibrated: np.ndarray | None = None,
) -> dict[str, float]:
    """Multiclass CBPE (NannyML's): expected accuracy, macro-F1 and log loss of an unlabelled
    window whose row i is of class c with probability ``calibrated[i, c]`` (default ``proba``).

    The model predicts the arg-max of ``proba``. Accuracy is the mean probability of the
    predicted class; per class c, one-vs-rest, the expected true positives are the sum of p_c
    over rows predicted c, false positives the sum of 1 - p_c there, false negatives the sum of
    p_c elsewhere, and macro-F1 averages 2 TP / (2 TP + FP + FN) over the classes; the log loss
    is the expected cross-entropy -sum_c p_c log proba_c. NaN for an empty window.
    """
    scores = np.asarray(proba, dtype=float)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"proba must be an (n, k) matrix with k >= 2, got shape {scores.shape}")
    p = scores if calibrated is None else np.asarray(calibrated, dtype=float)
    if p.shape != scores.shape:
        raise ValueError(f"calibrated differs in shape from proba: {p.shape} vs {scores.shape}")
    nan = float("nan")
    if scores.shape[0] == 0:
        return {"accuracy": nan, "macro_f1": nan, "log_loss": nan}
    n, k = scores.shape
    predicted = np.zeros_like(p, dtype=bool)
    predicted[np.arange(n), scores.argmax(axis=1)] = True
    true_pos = np.where(predicted, p, 0.0).sum(axis=0)
    false_pos = np.where(predicted, 1 - p, 0.0).sum(axis=0)
    false_neg = np.where(predicted, 0.0, p).sum(axis=0)
    denominator = 2 * true_pos + false_pos + false_neg
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros(k), where=denominator > 0)
    log_loss = -np.sum(p * np.log(np.clip(scores, EPS, 1 - EPS)), axis=1)
    return {
        "accuracy": float(true_pos.sum() / n),
        "macro_f1": float(f1.mean()),
        "log_loss": float(log_loss.mean()),
    }


__all__ = ["EPS", "expected_accuracy", "expected_multiclass"]

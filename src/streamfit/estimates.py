"""Label-free estimates from a model's own probabilities, shared by monitoring (its CBPE
performance estimate) and the live judge (a canary's accuracy floor before labels come), which
never import each other.

>>> expected_accuracy([0.9, 0.2, 0.5])
0.7333333333333334
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


__all__ = ["expected_accuracy"]

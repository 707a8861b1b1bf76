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
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import stats

from ._univariate import ChiSquaredTest, KSTest, drift_test_from_dict
from .performance import ProbabilityCalibrator, expected_calibration_error


class OutputDrift:
    """Fitted on reference probabilities and labels; state is plain JSON types."""

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


def _label_text(y: np.ndarray) -> pd.Series:
    return pd.Series(np.where(np.asarray(y) == 1, "1", "0"))


def _shares(p: np.ndarray) -> list[float]:
    counts = np.histogram(np.clip(p, 0.0, 1.0), bins=10, range=(0.0, 1.0))[0]
    return (counts / max(counts.sum(), 1)).tolist()


__all__ = ["OutputDrift"]

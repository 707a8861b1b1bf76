"""The label-free estimator family: one method per task that estimates a model's performance on
unlabelled predictions, fitted once on labelled reference predictions (a holdout no model trained
on). Fitted state is plain JSON types, so an estimator can be saved beside the model bundle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class PerformanceEstimator(ABC):
    """Base class: ``fit`` on labelled reference predictions, then ``estimate`` any number of
    unlabelled windows. ``estimate`` returns ``n`` and each of :attr:`metrics` (NaN when a window
    has no rows)."""

    #: The task the estimator applies to (binary, multiclass, regression).
    task: ClassVar[str]
    #: The metrics :meth:`estimate` returns, besides ``n``.
    metrics: ClassVar[tuple[str, ...]]
    #: Whether ``fit`` and ``estimate`` need the feature rows beside the predictions.
    needs_features: ClassVar[bool] = False

    @abstractmethod
    def fit(
        self,
        predictions: np.ndarray,
        labels: np.ndarray,
        features: pd.DataFrame | None = None,
    ) -> Self:
        """Learn what the estimate needs from labelled reference predictions."""

    @abstractmethod
    def estimate(
        self, predictions: np.ndarray, features: pd.DataFrame | None = None
    ) -> dict[str, float]:
        """Estimated metrics of an unlabelled window of predictions."""

    def _empty(self) -> dict[str, float]:
        return {"n": 0, **dict.fromkeys(self.metrics, float("nan"))}

    def to_dict(self) -> dict[str, Any]:
        """Hyper-parameters and fitted state as plain JSON types."""
        public = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"task": self.task, **public}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        state = dict(state)
        state.pop("task", None)
        estimator = cls.__new__(cls)
        estimator.__dict__.update(state)
        estimator._cache = {}
        return estimator


def check_rows(predictions: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Reject predictions and labels of different lengths, and an empty reference."""
    if labels is not None and len(predictions) != len(labels):
        raise ValueError(
            f"predictions and labels differ in length: {len(predictions)} vs {len(labels)}"
        )
    if labels is not None and len(labels) == 0:
        raise ValueError("an estimator needs labelled reference predictions, got none")

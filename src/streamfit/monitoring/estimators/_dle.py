"""Direct loss estimation (DLE, NannyML) for regression: on the reference, a LightGBM model
learns each row's absolute and squared error from its features and the prediction; on
unlabelled rows their predicted means give the estimated MAE and RMSE.

It only tracks real changes when the error depends on the inputs (heteroscedastic errors): where
the error is the same everywhere, the estimate stays at the reference's level whatever happens.
It assumes an unchanged P(y | x), and it needs windows large enough for a mean to settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from ._base import PerformanceEstimator, check_rows

PREDICTION = "__prediction__"  # the prediction's column in the loss models' input


class RegressionDLE(PerformanceEstimator):
    """Estimated RMSE and MAE of a regression model. ``features``: the columns the loss models
    read (default: every column of the reference frame); ``categorical``: those among them to
    treat as categories (default: the non-numeric ones). The loss models are LightGBM boosters
    of ``n_estimators`` trees, kept as LightGBM's text format."""

    task = "regression"
    metrics = ("rmse", "mae")
    needs_features = True

    def __init__(
        self,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] = (),
        *,
        n_estimators: int = 100,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        seed: int = 0,
    ) -> None:
        if n_estimators < 1 or num_leaves < 2 or min_child_samples < 1:
            raise ValueError("n_estimators, num_leaves and min_child_samples must be positive")
        if not 0 < learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {learning_rate}")
        self.features = list(features) if features is not None else None
        self.categorical = list(categorical)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed
        # Fitted state.
        self.columns: list[str] = []
        self.levels: dict[str, list[str]] = {}  # categorical column -> its reference levels
        self.absolute_model = ""
        self.squared_model = ""
        self._cache: dict[str, Any] = {}

    def fit(
        self,
        predictions: np.ndarray,
        labels: np.ndarray,
        features: pd.DataFrame | None = None,
    ) -> Self:
        v, y = _values(predictions), np.asarray(labels, dtype=float)
        check_rows(v, y)
        if features is None or len(features) != len(v):
            raise ValueError("RegressionDLE needs the reference's feature rows beside predictions")
        names = self.features if self.features is not None else list(map(str, features.columns))
        missing = [n for n in names if n not in features.columns]
        if missing:
            raise ValueError(f"the reference lacks feature columns: {', '.join(missing)}")
        self.columns = names
        self.levels = {
            n: sorted(map(str, features[n].dropna().unique()))
            for n in names
            if n in self.categorical or not pd.api.types.is_numeric_dtype(features[n])
        }
        x = self._design(v, features)
        error = y - v
        self.absolute_model = self._train(x, np.abs(error))
        self.squared_model = self._train(x, error**2)
        self._cache = {}
        return self

    def _design(self, predictions: np.ndarray, features: pd.DataFrame) -> np.ndarray:
        """The loss models' input: numerics as floats, categories as their level index (unseen
        and missing values as NaN), then the prediction."""
        frame = features.reset_index(drop=True)
        columns = []
        for name in self.columns:
            column = frame[name] if name in frame.columns else pd.Series([np.nan] * len(frame))
            if name in self.levels:
                index = {level: i for i, level in enumerate(self.levels[name])}
                codes = [
                    np.nan if pd.isna(value) else index.get(str(value), np.nan)
                    for value in column.tolist()
                ]
                columns.append(np.asarray(codes, dtype=float))
            else:
                columns.append(pd.to_numeric(column, errors="coerce").to_numpy(dtype=float))
        return np.column_stack([*columns, predictions]) if columns else predictions[:, None]

    def _train(self, x: np.ndarray, target: np.ndarray) -> str:
        categorical = [i for i, n in enumerate(self.columns) if n in self.levels]
        params = {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,
            "verbosity": -1,
        }
        data = lgb.Dataset(
            x,
            target,
            feature_name=[*[f"f{i}" for i in range(len(self.columns))], PREDICTION],
            categorical_feature=categorical,
            free_raw_data=True,
        )
        return lgb.train(params, data, num_boost_round=self.n_estimators).model_to_string()

    def estimate(
        self, predictions: np.ndarray, features: pd.DataFrame | None = None
    ) -> dict[str, float]:
        if not self.absolute_model:
            raise RuntimeError("RegressionDLE is not fitted: call fit(predictions, labels) first")
        v = _values(predictions)
        if v.size == 0:
            return self._empty()
        if features is None or len(features) != len(v):
            raise ValueError("RegressionDLE needs the window's feature rows beside predictions")
        if "models" not in self._cache:
            self._cache["models"] = [
                lgb.Booster(model_str=text) for text in (self.absolute_model, self.squared_model)
            ]
        absolute, squared = self._cache["models"]
        x = self._design(v, features)
        mae = float(np.clip(absolute.predict(x), 0.0, None).mean())
        rmse = float(np.sqrt(np.clip(squared.predict(x), 0.0, None).mean()))
        return {"n": int(v.size), "rmse": rmse, "mae": mae}


def _values(predictions: np.ndarray) -> np.ndarray:
    v = np.asarray(predictions, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"regression predictions are one value per row, got shape {v.shape}")
    return v


__all__ = ["RegressionDLE"]

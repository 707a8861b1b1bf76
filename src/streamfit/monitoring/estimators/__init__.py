"""Label-free performance estimates, one method per task: CBPE for binary and multiclass
classifiers, direct loss estimation (DLE) for regression. :func:`estimator_for` picks the one a
task needs; :func:`estimator_from_dict` restores a saved one."""

from __future__ import annotations

from typing import Any

from ._base import PerformanceEstimator
from ._cbpe import BinaryCBPE, MulticlassCBPE
from ._dle import RegressionDLE

ESTIMATORS: dict[str, type[PerformanceEstimator]] = {
    cls.task: cls for cls in (BinaryCBPE, MulticlassCBPE, RegressionDLE)
}


def estimator_for(task: str, **params: Any) -> PerformanceEstimator:
    """An unfitted estimator for ``task`` (binary, multiclass, regression)."""
    if task not in ESTIMATORS:
        raise ValueError(f"task must be one of {tuple(ESTIMATORS)}, got {task!r}")
    return ESTIMATORS[task](**params)


def estimator_from_dict(state: dict[str, Any]) -> PerformanceEstimator:
    """Rebuild an estimator saved with ``to_dict``."""
    task = state.get("task")
    if task not in ESTIMATORS:
        raise ValueError(f"unknown estimator task {task!r}")
    return ESTIMATORS[task].from_dict(state)


__all__ = [
    "ESTIMATORS",
    "BinaryCBPE",
    "MulticlassCBPE",
    "PerformanceEstimator",
    "RegressionDLE",
    "estimator_for",
    "estimator_from_dict",
]

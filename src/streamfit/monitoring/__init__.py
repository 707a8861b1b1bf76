"""Monitoring: input drift (per-feature tests and a domain classifier) over a contract's columns,
realised and estimated performance and output drift per task (binary, multiclass, regression),
and the background monitor that publishes drift events."""

from __future__ import annotations

from ..drift._base import DriftTest, TestResult
from ..drift._classifier import CLASSIFIERS, DomainClassifier, auc_with_z, drift_score
from ..drift._univariate import (
    ChiSquaredTest,
    KSTest,
    PSITest,
    drift_test_from_dict,
    get_drift_test,
)
from ..drift.detector import CORRECTIONS, DriftDetector, drifting_features
from ..drift.report import DriftReport, FeatureDrift
from .estimators import (
    PerformanceEstimator,
    estimator_for,
    estimator_from_dict,
)
from .monitor import Monitor, alarm_budget, detector_from_settings
from .offline import drift_command
from .output import (
    MulticlassOutputDrift,
    OutputDrift,
    RegressionOutputDrift,
    output_drift_for,
)
from .performance import (
    ProbabilityCalibrator,
    estimate_performance,
    expected_calibration_error,
    expected_roc_auc,
    metrics_by_version,
    realised_metrics,
    realised_performance,
    window_metrics,
)
from .sequential import AlarmBudget, SequentialScan
from .service import build_monitor

__all__ = [
    "CLASSIFIERS",
    "AlarmBudget",
    "CORRECTIONS",
    "ChiSquaredTest",
    "DomainClassifier",
    "DriftDetector",
    "DriftReport",
    "DriftTest",
    "FeatureDrift",
    "KSTest",
    "Monitor",
    "MulticlassOutputDrift",
    "OutputDrift",
    "PerformanceEstimator",
    "PSITest",
    "ProbabilityCalibrator",
    "RegressionOutputDrift",
    "SequentialScan",
    "TestResult",
    "alarm_budget",
    "auc_with_z",
    "build_monitor",
    "detector_from_settings",
    "drift_command",
    "drift_score",
    "drift_test_from_dict",
    "drifting_features",
    "estimate_performance",
    "estimator_for",
    "estimator_from_dict",
    "expected_calibration_error",
    "expected_roc_auc",
    "get_drift_test",
    "metrics_by_version",
    "output_drift_for",
    "realised_metrics",
    "realised_performance",
    "window_metrics",
]

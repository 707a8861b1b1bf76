"""Realised metrics match scikit-learn; CBPE estimates track realised performance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from streamfit.monitoring.performance import (
    ProbabilityCalibrator,
    estimate_performance,
    expected_calibration_error,
    expected_roc_auc,
    metrics_by_version,
    realised_metrics,
    window_metrics,
)


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 1.4, n)
    return (rng.random(n) < p).astype(int), p


def _direct(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        (bins == b).mean() * abs(y[bins == b].mean() - p[bins == b].mean())
        for b in range(10)
        if (bins == b).any()
    )
    return {
        "auc": roc_auc_score(y, p),
        "log_loss": log_loss(y, p),
        "accuracy": accuracy_score(y, p >= 0.5),
        "f1": f1_score(y, p >= 0.5),
        "ece": ece,
    }


def test_realised_metrics_match_sklearn() -> None:
    y, p = _calibrated(2000, 0)
    metrics = realised_metrics(y, p)
    for name, value in _direct(y, p).items():
        assert metrics[name] == pytest.approx(value), name
    assert metrics["n"] == 2000


def test_realised_metrics_survive_one_class_and_empty_windows() -> None:
    one_class = realised_metrics([1, 1, 1], [0.9, 0.6, 0.4])
    assert np.isnan(one_class["auc"]) and one_class["accuracy"] == pytest.approx(2 / 3)
    assert realised_metrics([], [])["n"] == 0


def test_metrics_per_version_and_sliding_window() -> None:
    y, p = _calibrated(900, 1)
    frame = pd.DataFrame({"label": y, "probability": p, "model_version": [1] * 600 + [2] * 300})
    frame.loc[5, "label"] = np.nan  # not labelled yet
    per_version = metrics_by_version(frame)
    assert sorted(per_version) == [1, 2]
    rows = frame[frame.model_version == 1].dropna()
    direct = _direct(rows.label.to_numpy(int), rows.probability.to_numpy())
    assert per_version[1]["auc"] == pytest.approx(direct["auc"])
    assert per_version[1]["n"] == 599
    last = window_metrics(frame, 250)
    assert last["log_loss"] == pytest.approx(log_loss(y[-250:], p[-250:]))


def test_ece_is_zero_for_exact_bin_means() -> None:
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(y, [0.5, 0.5, 0.5, 0.5]) == 0.0
    assert expected_calibration_error(y, [0.0, 0.0, 0.0, 0.0]) == pytest.approx(0.5)


def test_expected_auc_brute_force() -> None:
    rng = np.random.default_rng(2)
    p = np.round(rng.random(40), 1)  # ties
    pairs = [(i, j) for i in range(40) for j in range(40) if i != j]
    ordered = sum(p[i] * (1 - p[j]) * ((p[i] > p[j]) + 0.5 * (p[i] == p[j])) for i, j in pairs)
    total = sum(p[i] * (1 - p[j]) for i, j in pairs)
    assert expected_roc_auc(p) == pytest.approx(ordered / total)


def test_estimates_track_realised_performance_when_calibrated() -> None:
    y, p = _calibrated(20000, 3)
    estimate, realised = estimate_performance(p), realised_metrics(y, p)
    for name in ("accuracy", "f1", "auc"):
        assert estimate[name] == pytest.approx(realised[name], abs=0.01), name


def test_calibrator_repairs_overconfident_scores() -> None:
    y, p = _calibrated(20000, 4)
    overconfident = np.clip(p * 1.6 - 0.3, 0.001, 0.999)
    calibrator = ProbabilityCalibrator().fit(overconfident[:10000], y[:10000])
    calibrator = ProbabilityCalibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    realised = realised_metrics(y[10000:], overconfident[10000:])["accuracy"]
    raw = estimate_performance(overconfident[10000:])["accuracy"]
    fixed = estimate_performance(overconfident[10000:], calibrator=calibrator)["accuracy"]
    assert abs(fixed - realised) < 0.01 < abs(raw - realised)

"""Output and label drift: the served model's probabilities, label share, realised calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamfit.monitoring import OutputDrift


def _model(n: int, seed: int, positive_rate: float = 0.25, flip: float = 0.0):
    """Calibrated scores of a fair model: labels drawn from the probabilities; ``flip``: the
    share of labels replaced by the opposite class afterwards (a change in P(y | x))."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(np.log(positive_rate / (1 - positive_rate)), 1.5, n)
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(int)
    flipped = rng.random(n) < flip
    y[flipped] = 1 - y[flipped]
    return p, y


@pytest.fixture(scope="module")
def output() -> OutputDrift:
    return OutputDrift().fit(*_model(5000, 0))


def test_undrifted_window_raises_nothing(output: OutputDrift) -> None:
    p, y = _model(1000, 1)
    assert not output.test_output(p, 0.01)["drifted"]
    labels = output.test_labels(p, y, 0.01)
    assert not labels["drifted"] and labels["n"] == 1000
    assert labels["calibration_error"] < 0.05


def test_a_shifted_output_distribution_is_caught(output: OutputDrift) -> None:
    p, _ = _model(1000, 2, positive_rate=0.4)
    result = output.test_output(p, 0.01)
    assert result["drifted"] and result["mean"] > result["reference_mean"]


def test_a_concept_shift_is_caught_by_calibration_not_by_output(output: OutputDrift) -> None:
    p, y = _model(1000, 3, flip=0.15)
    assert not output.test_output(p, 0.01)["drifted"]  # the inputs, hence the scores, alike
    labels = output.test_labels(p, y, 0.01)
    assert labels["drifted"] and labels["calibration_p_value"] < 0.01


def test_without_labels_or_probabilities_there_is_nothing_to_test(output: OutputDrift) -> None:
    assert output.test_output(np.array([]), 0.01) is None
    assert output.test_labels(np.array([0.3]), np.array([np.nan]), 0.01) is None
    unlabelled = OutputDrift().fit(_model(500, 4)[0])
    assert unlabelled.test_labels(*_model(100, 5), 0.01) is None


def test_state_round_trips_through_json(output: OutputDrift) -> None:
    again = OutputDrift.from_dict(json.loads(json.dumps(output.to_dict())))
    p, y = _model(700, 6, flip=0.1)
    assert again.test_labels(p, y, 0.01) == output.test_labels(p, y, 0.01)
    assert again.test_output(p, 0.01) == output.test_output(p, 0.01)
    with pytest.raises(RuntimeError, match="not fitted"):
        OutputDrift().test_output(p, 0.01)

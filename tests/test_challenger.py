"""The sequential test's core: its guarantee, its outcomes, its bounds."""

from __future__ import annotations

import numpy as np
import pytest

from streamfit.challengers.comparison import (
    ConfidenceSequence,
    LiveComparison,
    log_loss_differences,
)


def _noisy(p: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    logit = np.log(p / (1 - p)) + rng.normal(0.0, noise, p.size)
    return 1 / (1 + np.exp(-logit))


def _stream(rng: np.random.Generator, n: int, champion_noise: float, challenger_noise: float):
    truth = rng.beta(2, 5, n)
    labels = (rng.random(n) < truth).astype(int)
    return _noisy(truth, rng, champion_noise), _noisy(truth, rng, challenger_noise), labels


def test_differences_are_clipped_and_signed() -> None:
    d = log_loss_differences([0.0, 0.9], [0.5, 0.9], [1, 1], epsilon=0.01)
    assert d[0] == pytest.approx(-np.log(0.01) + np.log(0.5))  # 0 clipped to 0.01
    assert d[1] == 0.0


def test_sequence_covers_the_mean_at_every_time() -> None:
    """Coverage over the whole path (not at one time): at most alpha of the runs ever miss."""
    rng = np.random.default_rng(1)
    alpha, misses = 0.1, 0
    for _ in range(200):
        cs = ConfidenceSequence(alpha)
        x = rng.beta(2, 3, 1000)  # mean 0.4
        for chunk in np.array_split(x, 20):
            cs.extend(chunk)
            if not cs.lower <= 0.4 <= cs.upper:
                misses += 1
                break
    assert misses <= alpha * 200


def test_batches_give_the_same_sequence_as_one_pass() -> None:
    x = np.random.default_rng(2).random(500)
    whole, parts = ConfidenceSequence(), ConfidenceSequence()
    whole.extend(x)
    for chunk in np.array_split(x, 7):
        parts.extend(chunk)
    assert (parts.lower, parts.upper) == pytest.approx((whole.lower, whole.upper))


def test_worse_challenger_is_rejected_and_better_promoted() -> None:
    rng = np.random.default_rng(3)
    good, bad, labels = _stream(rng, 3000, 0.1, 2.0)
    rejected = LiveComparison(min_pairs=50, max_pairs=3000).update(good, bad, labels)
    promoted = LiveComparison(min_pairs=50, max_pairs=3000).update(bad, good, labels)
    assert rejected.decision == "reject" and rejected.upper < 0 < -rejected.estimate
    assert promoted.decision == "promote" and promoted.lower > 0
    assert 50 <= rejected.pairs < 3000


def test_identical_models_end_at_the_maximum() -> None:
    champion, _, labels = _stream(np.random.default_rng(4), 500, 0.3, 0.3)
    test = LiveComparison(min_pairs=20, max_pairs=300)
    for start in range(0, 500, 50):
        chunk = slice(start, start + 50)
        evidence = test.update(champion[chunk], champion[chunk], labels[chunk])
    assert evidence.decision == "keep" and evidence.pairs == 300
    assert evidence.lower <= 0 <= evidence.upper and evidence.estimate == 0


def test_no_decision_before_min_pairs() -> None:
    good, bad, labels = _stream(np.random.default_rng(5), 400, 0.1, 3.0)
    test = LiveComparison(min_pairs=300, max_pairs=400)
    assert test.update(good[:299], bad[:299], labels[:299]).decision == "running"
    evidence = test.update(good[299:], bad[299:], labels[299:])
    assert evidence.decision == "reject" and evidence.pairs >= 300


def test_decided_stays_decided() -> None:
    good, bad, labels = _stream(np.random.default_rng(6), 2000, 0.1, 3.0)
    test = LiveComparison(min_pairs=10, max_pairs=2000)
    first = test.update(good, bad, labels)
    assert test.update(bad, good, labels) == first


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0},
        {"alpha": 1.5},
        {"epsilon": 0},
        {"min_pairs": 0},
        {"min_pairs": 9, "max_pairs": 8},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LiveComparison(**kwargs)


def test_values_outside_the_unit_interval_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        ConfidenceSequence().extend([0.5, 1.5])

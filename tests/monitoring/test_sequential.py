"""The sequential layer: the CUSUM's false-alarm budget and its accumulation of small shifts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from streamfit.monitoring.sequential import Cusum, cusum_arl0, cusum_threshold


def test_threshold_inverts_the_run_length_formula() -> None:
    for arl0 in (50, 400, 2800):
        h = cusum_threshold(arl0, 0.5)
        assert cusum_arl0(h, 0.5) == pytest.approx(arl0, rel=1e-6)


def test_run_length_without_drift_meets_the_budget() -> None:
    # Uniform p-values (no drift) on 3 features; budget 20 checks, so each feature's CUSUM gets
    # 2 * 20 * 3 = 120 and the first alarm among three comes after about 40 checks on average.
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(200):
        cusum = Cusum(["a", "b", "c"], ert=20)
        while not cusum.update(dict(zip("abc", rng.random(3), strict=True))):
            pass
        runs.append(cusum.checks)
    assert np.mean(runs) >= 20


def test_a_shift_too_small_for_one_block_is_caught_after_a_few() -> None:
    # z shifted by 1.5 per block: p ~ 0.07 at the median, never significant on its own after a
    # correction, but it accumulates.
    rng = np.random.default_rng(1)
    cusum = Cusum(["a", "b"], ert=100)
    alarmed: list[str] = []
    while not alarmed and cusum.checks < 40:
        alarmed = cusum.update(
            {"a": float(stats.norm.sf(rng.normal(1.5))), "b": float(rng.random())}
        )
    assert alarmed == ["a"] and cusum.checks <= 12
    assert cusum.statistics == {"a": 0.0, "b": 0.0}  # restarted after the alarm


def test_state_round_trips_and_rejects_bad_budgets() -> None:
    cusum = Cusum(["a"], ert=50)
    cusum.update({"a": 0.01})
    again = Cusum.from_dict(json.loads(json.dumps(cusum.to_dict())))
    assert again.to_dict() == cusum.to_dict()
    with pytest.raises(ValueError, match="ert"):
        Cusum(["a"], ert=0.5)
    assert Cusum.window_alpha(100) == 0.005

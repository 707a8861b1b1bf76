"""Sequential drift monitoring: evidence accumulated across checks, with a false-alarm budget.

A window test at level alpha raises, on average, one false alarm every 1/alpha checks, and it
forgets everything between checks: a shift too small to clear one window is never caught. The
monitor therefore also runs one CUSUM per feature on the *disjoint* block of messages that
arrived since the previous check (``drift_every`` rows):

    z_t = Phi^-1(1 - p_t)         (p_t: the feature's uncorrected p-value on block t)
    S_t = max(0, S_{t-1} + z_t - k)   and an alarm when S_t > h.

Under no drift the blocks are independent and p_t is uniform (or, for the conservative tests on
tied data, stochastically larger), so z_t is at most standard normal and the run length between
false alarms follows Siegmund's approximation for a Gaussian CUSUM:

    ARL0(h) = (exp(2 k b) - 2 k b - 1) / (2 k^2),  b = h + 1.166.

The budget is stated as an expected run time (ERT) in checks. It is shared: half goes to the
window test (its alpha per check is at most 1 / (2 ERT)), half to the CUSUMs, and that half is
split evenly across the m features (each feature's CUSUM gets ARL0 = 2 ERT m), so the union of
all alarms still expects at least ERT checks between false alarms. A persistent shift that moves
z by about one per block crosses h in roughly h / (1 - k) blocks.

>>> cusum = Cusum(["a", "b"], ert=100)
>>> round(cusum.threshold, 2)
4.16
>>> cusum.update({"a": 0.5, "b": 0.5})
[]
>>> [cusum.update({"a": 1e-4, "b": 0.5}) for _ in range(2)]
[[], ['a']]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

from scipy import stats

#: Siegmund's correction of the threshold for the overshoot of a Gaussian random walk.
_OVERSHOOT = 1.166


def cusum_arl0(threshold: float, k: float) -> float:
    """Siegmund's in-control average run length of a one-sided CUSUM of N(0, 1) increments."""
    a = 2.0 * k * (threshold + _OVERSHOOT)
    return (math.exp(a) - a - 1.0) / (2.0 * k * k)


def cusum_threshold(arl0: float, k: float) -> float:
    """The smallest threshold h whose in-control run length reaches ``arl0`` (bisection)."""
    low, high = 0.0, 1.0
    while cusum_arl0(high, k) < arl0:
        high *= 2.0
    for _ in range(60):
        middle = (low + high) / 2.0
        low, high = (middle, high) if cusum_arl0(middle, k) < arl0 else (low, middle)
    return high


class Cusum:
    """One CUSUM per feature on per-block p-values; state is plain JSON types."""

    def __init__(self, features: Sequence[str], ert: float = 100.0, k: float = 0.5) -> None:
        if ert < 1:
            raise ValueError(f"ert (checks between false alarms) must be >= 1, got {ert}")
        if k <= 0:
            raise ValueError(f"k (the CUSUM's reference value) must be > 0, got {k}")
        if not features:
            raise ValueError("Cusum needs at least one feature")
        self.features = list(features)
        self.ert = float(ert)
        self.k = float(k)
        # Half the budget to the CUSUMs, split across features (see the module docstring).
        self.threshold = cusum_threshold(2.0 * self.ert * len(self.features), self.k)
        self.statistics = dict.fromkeys(self.features, 0.0)
        self.last = dict(self.statistics)
        self.checks = 0

    @staticmethod
    def window_alpha(ert: float) -> float:
        """The window test's level per check under the same budget: the other half."""
        return 1.0 / (2.0 * ert)

    def update(self, p_values: Mapping[str, float]) -> list[str]:
        """Add one block's p-values; return the features whose CUSUM crossed the threshold.

        After an alarm every statistic restarts from zero, so the run length to the next false
        alarm is again the budgeted one. A feature without a p-value (NaN, absent) stays put.
        """
        self.checks += 1
        for name in self.features:
            p = p_values.get(name, math.nan)
            if p is None or math.isnan(p):
                continue
            z = float(stats.norm.isf(min(max(p, 1e-300), 1.0)))
            self.statistics[name] = max(0.0, self.statistics[name] + z - self.k)
        alarmed = [n for n in self.features if self.statistics[n] > self.threshold]
        alarmed.sort(key=lambda n: -self.statistics[n])
        self.last = dict(self.statistics)  # as they stood at this check, before any reset
        if alarmed:
            self.reset()
        return alarmed

    def reset(self) -> None:
        self.statistics = dict.fromkeys(self.features, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Self:
        cusum = cls(state["features"], state["ert"], state["k"])
        cusum.statistics = dict(state["statistics"])
        cusum.last = dict(state.get("last", cusum.statistics))
        cusum.checks = int(state["checks"])
        return cusum


__all__ = ["Cusum", "cusum_arl0", "cusum_threshold"]

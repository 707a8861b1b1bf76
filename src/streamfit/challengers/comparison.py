"""The live champion/challenger test: paired log-loss differences, judged by a confidence sequence.

Both models score the same request; once its label arrives, the pair gives one difference

    d = loss(champion) - loss(challenger)        (positive: the challenger did better)

with each probability clipped to ``[epsilon, 1 - epsilon]``, so ``|d| <= log((1 - epsilon) /
epsilon)``. Pairing removes the between-request variance (a hard request is hard for both).

The mean of ``d`` is estimated by an **always-valid confidence sequence**: intervals that contain
the true mean at every number of pairs simultaneously with probability at least ``1 - alpha``,
however often they are looked at. The one used is the *predictable plug-in empirical-Bernstein*
confidence sequence of Waudby-Smith and Ramdas, "Estimating means of bounded random variables by
betting", JRSS-B 2023 (Theorem 2, eqs. 13-15, with ``c = 3/4``), for variables in ``[0, 1]`` (the
differences are mapped there). It adapts to the variance of the differences, which pairing makes
small; it is closed-form and updates in O(1) per pair (running sums), so the recorder's store can
be re-read and the whole sequence recomputed at any time. The running intersection of the
intervals is kept, which stays valid (Howard et al., Annals of Statistics 2021, section 6).

Outcomes: ``promote`` when the interval lies above 0, ``reject`` when below, ``keep`` (the
champion stays) when ``max_pairs`` pairs came without either; nothing is decided before
``min_pairs`` pairs (the first labels come from the fast-labelled requests, a biased subset).

PyPI's ``confseq`` implements the same family but is a C++ extension built from source with
Boost, and computes the betting sequences over a grid: too heavy for a predictor-side package,
so the closed-form sequence is written here (about 60 lines) and tested against its guarantee.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> labels = rng.integers(0, 2, 2000)
>>> good = np.where(labels == 1, 0.8, 0.2)   # confident and right
>>> worse = np.full(2000, 0.5)               # knows nothing
>>> test = LiveComparison(min_pairs=100, max_pairs=2000)
>>> evidence = test.update(good, worse, labels)
>>> evidence.decision, evidence.pairs < 500
('reject', True)
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

DECISIONS = ("running", "promote", "reject", "keep")
_C = 0.75  # the largest bet (WSR 2023 suggest 1/2 or 3/4); 3/4 narrows the early intervals


def log_loss_differences(
    champion: ArrayLike, challenger: ArrayLike, labels: ArrayLike, epsilon: float
) -> np.ndarray:
    """Per-request ``loss(champion) - loss(challenger)``, probabilities clipped to
    ``[epsilon, 1 - epsilon]``; positive where the challenger did better."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(champion, dtype=np.float64), epsilon, 1.0 - epsilon)
    q = np.clip(np.asarray(challenger, dtype=np.float64), epsilon, 1.0 - epsilon)
    if not y.shape == p.shape == q.shape:
        raise ValueError(
            f"pairs need as many labels as probabilities: {y.shape}, {p.shape}, {q.shape}"
        )
    loss_p = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    loss_q = -(y * np.log(q) + (1.0 - y) * np.log1p(-q))
    return loss_p - loss_q


class ConfidenceSequence:
    """Predictable plug-in empirical-Bernstein confidence sequence for the mean of variables in
    ``[0, 1]`` (Waudby-Smith & Ramdas 2023, Theorem 2). Extend it with batches of observations;
    :attr:`lower` and :attr:`upper` are the running intersection of its intervals.

    >>> cs = ConfidenceSequence(alpha=0.05)
    >>> _ = cs.extend(np.full(1000, 0.3))
    >>> round(cs.lower, 3), round(cs.upper, 3)
    (0.295, 0.305)
    """

    def __init__(self, alpha: float = 0.05) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self._log_term = math.log(2.0 / alpha)
        self.count = 0
        self._sum_x = 0.0  # for the running mean estimate mu_t
        self._sum_sq = 0.0  # for the running variance estimate sigma_t^2
        self._mean = 0.5  # mu_{t-1}, with its prior
        self._var = 0.25  # sigma^2_{t-1}, with its prior
        self._sum_bets = 0.0
        self._sum_weighted = 0.0
        self._sum_penalty = 0.0
        self.lower = 0.0
        self.upper = 1.0

    def extend(self, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Take a batch of observations in ``[0, 1]`` (in order); O(len) with NumPy. Returns
        the running intersection's lower and upper bounds after each of them."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            return np.empty(0), np.empty(0)
        if not np.all((x >= 0.0) & (x <= 1.0)):
            raise ValueError("a confidence sequence for [0, 1] got a value outside it")
        t = self.count + np.arange(1, x.size + 1, dtype=np.float64)
        means = (0.5 + self._sum_x + np.cumsum(x)) / (t + 1.0)
        previous_means = np.concatenate(([self._mean], means[:-1]))
        squares = self._sum_sq + np.cumsum((x - means) ** 2)
        variances = (0.25 + squares) / (t + 1.0)
        previous_vars = np.concatenate(([self._var], variances[:-1]))
        # The bet of step t uses only what came before it (predictable): eq. 13.
        bets = np.minimum(np.sqrt(2.0 * self._log_term / (previous_vars * t * np.log1p(t))), _C)
        penalties = 4.0 * (x - previous_means) ** 2 * (-np.log1p(-bets) - bets) / 4.0
        sum_bets = self._sum_bets + np.cumsum(bets)
        centres = (self._sum_weighted + np.cumsum(bets * x)) / sum_bets
        widths = (self._log_term + self._sum_penalty + np.cumsum(penalties)) / sum_bets
        lowers = np.maximum.accumulate(np.concatenate(([self.lower], centres - widths)))[1:]
        uppers = np.minimum.accumulate(np.concatenate(([self.upper], centres + widths)))[1:]
        self.lower, self.upper = float(lowers[-1]), float(uppers[-1])
        self.count = int(t[-1])
        self._sum_x += float(x.sum())
        self._sum_sq = float(squares[-1])
        self._mean, self._var = float(means[-1]), float(variances[-1])
        self._sum_bets = float(sum_bets[-1])
        self._sum_weighted += float(np.dot(bets, x))
        self._sum_penalty += float(penalties.sum())
        return lowers, uppers


@dataclass(frozen=True)
class Evidence:
    """Where a live comparison stands: ``estimate`` and ``[lower, upper]`` are in log loss per
    request, champion minus challenger (positive: the challenger is better)."""

    decision: str  # one of DECISIONS
    pairs: int
    estimate: float
    lower: float
    upper: float
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LiveComparison:
    """The sequential test on paired log-loss differences (see the module docstring).

    Feed it pairs in the order their labels arrived; once decided, it stays decided.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        epsilon: float = 0.01,
        min_pairs: int = 100,
        max_pairs: int = 300,
    ) -> None:
        if not 0.0 < epsilon < 0.5:
            raise ValueError(f"epsilon must be in (0, 0.5), got {epsilon}")
        if min_pairs < 1 or max_pairs < min_pairs:
            raise ValueError(
                f"need 1 <= min_pairs <= max_pairs, got min {min_pairs} and max {max_pairs}"
            )
        self.alpha = alpha
        self.epsilon = epsilon
        self.min_pairs = min_pairs
        self.max_pairs = max_pairs
        self.bound = math.log((1.0 - epsilon) / epsilon)  # |d| never exceeds it
        self.sequence = ConfidenceSequence(alpha)
        self._sum = 0.0
        self.decision = "running"
        self.decided_at: int | None = None  # pairs when the decision was taken

    @property
    def pairs(self) -> int:
        return self.sequence.count

    def update(self, champion: ArrayLike, challenger: ArrayLike, labels: ArrayLike) -> Evidence:
        """Add pairs (probabilities of both models and the labels); return the evidence.

        Pairs beyond ``max_pairs`` or after a decision are ignored: the test has ended."""
        if self.decision != "running":
            return self.evidence
        d = log_loss_differences(champion, challenger, labels, self.epsilon)
        d = d[: self.max_pairs - self.pairs]
        if d.size == 0:
            return self.evidence
        before = copy.copy(self.sequence)
        lowers, uppers = self.sequence.extend(self._unit(d))
        # The first pair at which the test stops (min_pairs reached, then 0 left the interval
        # or max_pairs came): the evidence is the sequence at that pair, as if checked per pair.
        counts = before.count + np.arange(1, d.size + 1)
        eligible = counts >= self.min_pairs
        half = 0.5  # d = 0 maps to 1/2
        stops = eligible & ((lowers > half) | (uppers < half) | (counts >= self.max_pairs))
        if stops.any():
            last = int(np.argmax(stops))
            if last < d.size - 1:
                self.sequence = before
                self.sequence.extend(self._unit(d[: last + 1]))
                d = d[: last + 1]
            self.decision = (
                "promote" if lowers[last] > half else "reject" if uppers[last] < half else "keep"
            )
            self.decided_at = self.pairs
        self._sum += float(d.sum())
        return self.evidence

    def _unit(self, d: np.ndarray) -> np.ndarray:
        return (d + self.bound) / (2.0 * self.bound)

    def _interval(self) -> tuple[float, float]:
        scale = 2.0 * self.bound
        return (
            self.sequence.lower * scale - self.bound,
            self.sequence.upper * scale - self.bound,
        )

    @property
    def evidence(self) -> Evidence:
        lower, upper = self._interval()
        estimate = self._sum / self.pairs if self.pairs else 0.0
        return Evidence(self.decision, self.pairs, estimate, lower, upper, self.alpha)


__all__ = [
    "DECISIONS",
    "ConfidenceSequence",
    "Evidence",
    "LiveComparison",
    "log_loss_differences",
]

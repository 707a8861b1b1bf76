"""Sequential drift monitoring: evidence accumulated across checks, with a false-alarm budget.

A window test at level alpha raises, on average, one false alarm every 1/alpha checks, and it
forgets everything between checks: a shift too small to clear one window is never caught. The
monitor therefore also keeps, per feature, the binned counts of the *disjoint* blocks of messages
that arrived at each of the last ``max_checks`` checks (``drift_every`` rows each), and at every
check tests the counts accumulated over the most recent 1, 2, 4, 8, ... blocks against the
reference's (chi-squared, sparse cells pooled as in the window test): a scan over candidate
change points, the last block being "now". A persistent shift's evidence grows with the rows
since it began, and the span that starts near the change uses all of them.

The budget is stated as an expected run time (ERT) in checks, for the monitor as the user sees
it: a check raises an alarm (a drift event with ``drifted`` true) when any of its sources fires.
:class:`AlarmBudget` splits the per-check false-alarm probability 1 / ERT by a union bound, which
holds whatever the sources' correlation:

* half, 1 / (2 ERT), to the window check: the m feature tests and the domain classifier corrected
  together (Holm) at (m + 1) / (m + 4) of it, and the three output and label tests at 1 / (m + 4)
  of it each (with m = 14: 0.00417 + 3 x 0.00028 = 0.005 at ERT 100);
* half to the scan, split evenly across the m features and the L spans by Bonferroni. A feature
  alarms when

    p_seq = min(1, L * min_span p_span) < 1 / (2 ERT m),

  so a check raises a scan alarm with probability at most 1 / (2 ERT) as long as each span's
  p-value is valid, however the (overlapping) spans and the features correlate.

Either way a check alarms with probability at most 1 / ERT, so the alarms of N undrifted checks
number N / ERT or fewer on average. After an alarm the monitor **restarts** both sources: the
scan drops its blocks, and the window test looks only at requests that arrived after the alarm
(:meth:`AlarmBudget.window_rows`) until a whole window of them is in. Overlapping windows share
three quarters of their rows (window 1,000, a check every 250), so without the restart one
unlucky stretch of requests made up to four consecutive alarms; with it no request takes part in
two alarms, and every alarm is fresh evidence. The restart removes these runs; it does not change
the bound, which holds per check.

The bound is not slack: on a stream with no shift the sources sit close to their shares (the
overlapping spans are nearly independent at so small a level), so a 1,000-check measurement of a
monitor at exactly ERT 100 would show fewer than 100 checks per false alarm about half the time.
The default budget (``drift_ert`` 200, config) is therefore twice the issue's target of >= 100: it
expects at most 5 false alarms in 1,000 checks, and the target fails only with 11 or more
(1.4 % for a Poisson count of mean 5). ``benchmarks/drift.py`` measures it on real data
(docs/benchmarks/drift.md).

Why not the CUSUM this replaced (S = max(0, S + Phi^-1(1 - p) - k) on each block's p-value): a
block's p-value is two-sided, so every block's evidence is folded onto |z| and the direction of a
persistent shift is thrown away; on Adult, a 5-point fall in the share of men (a z of 1.7 per
250-row block) was caught within 5,000 messages in only 90 % of runs. Testing the pooled counts
keeps the direction (the deviations add up before they are squared): the same shift is caught
in every run, median delay about 1,400 messages. The evidence is reported on one scale for all
features, z = Phi^-1(1 - p_seq), beside its threshold Phi^-1(1 - 1 / (2 ERT m)).

>>> scan = SequentialScan({"a": [5000, 5000], "b": [9000, 1000]}, ert=100)
>>> scan.spans, round(scan.threshold, 2)
([1, 2, 4, 8, 16], 2.81)
>>> scan.update({"a": [125, 125], "b": [225, 25]})
[]
>>> [scan.update({"a": [110, 140], "b": [225, 25]}) for _ in range(4)]  # 44 % instead of 50 %
[[], [], [], ['a']]
>>> scan.blocks, round(scan.last["a"], 2)  # restarted after the alarm
([], 2.97)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from scipy import stats

from ..drift._univariate import chi_squared_counts

#: Blocks (checks) kept by default: 16 x 250 messages, so a change up to 4,000 messages old
#: still has a span that starts at it.
MAX_CHECKS = 16


def spans_for(max_checks: int) -> list[int]:
    """The spans tested at each check: powers of two up to ``max_checks``, and ``max_checks``."""
    spans = [1 << i for i in range(max_checks.bit_length()) if 1 << i <= max_checks]
    return spans if spans[-1] == max_checks else [*spans, max_checks]


class AlarmBudget:
    """The monitor's false-alarm budget per check, split between its sources (module docstring).

    ``ert``: expected checks between false alarms; ``n_features``: the m features tested (the
    schema's, so the split does not depend on which columns a reference happens to hold).

    >>> budget = AlarmBudget(ert=100, n_features=14)
    >>> budget.window, round(budget.window_tests, 5), round(budget.output_test, 6)
    (0.005, 0.00417, 0.000278)
    >>> round(budget.window_tests + 3 * budget.output_test + budget.scan, 6) == 1 / 100
    True
    >>> [budget.window_rows(1000, fresh) for fresh in (250, 750, 1000, 5000, 0)]
    [250, 750, 1000, 1000, 1000]
    """

    #: Output drift, label share and realised calibration: tested beside the window's features.
    OUTPUT_TESTS = 3

    def __init__(self, ert: float, n_features: int) -> None:
        if ert < 1:
            raise ValueError(f"ert (checks between false alarms) must be >= 1, got {ert}")
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.ert = float(ert)
        self.n_features = int(n_features)

    @property
    def window(self) -> float:
        """The window check's share per check: every test of one window together."""
        return 1.0 / (2.0 * self.ert)

    @property
    def scan(self) -> float:
        """The change scan's share per check (what :class:`SequentialScan` spends)."""
        return 1.0 / (2.0 * self.ert)

    @property
    def window_tests(self) -> float:
        """Family-wise level of the m feature tests and the classifier (Holm over m + 1)."""
        return self.window * (self.n_features + 1) / (self.n_features + 1 + self.OUTPUT_TESTS)

    @property
    def output_test(self) -> float:
        """Level of each output and label test: a Bonferroni share of the window's."""
        return self.window / (self.n_features + 1 + self.OUTPUT_TESTS)

    @staticmethod
    def window_rows(window: int, fresh: int) -> int:
        """Rows the window test looks at when ``fresh`` requests arrived since the last alarm:
        only those (the restart), up to a whole window; a whole window when none arrived (a
        forced check right after an alarm)."""
        return min(window, fresh) if fresh > 0 else window


class SequentialScan:
    """A change scan per feature on the binned counts of consecutive disjoint blocks.

    ``reference_counts``: per feature, the reference's count in each bin (the bins the block
    counts use, see :meth:`DriftDetector.feature_counts`). State is plain JSON types.
    """

    def __init__(
        self,
        reference_counts: Mapping[str, Sequence[float]],
        ert: float = 100.0,
        max_checks: int = MAX_CHECKS,
        min_expected: float = 5.0,
    ) -> None:
        if ert < 1:
            raise ValueError(f"ert (checks between false alarms) must be >= 1, got {ert}")
        if max_checks < 1:
            raise ValueError(f"max_checks (blocks kept) must be >= 1, got {max_checks}")
        if min_expected < 0:
            raise ValueError(f"min_expected must be >= 0, got {min_expected}")
        if not reference_counts:
            raise ValueError("SequentialScan needs at least one feature")
        self.reference_counts = {n: [float(c) for c in v] for n, v in reference_counts.items()}
        self.features = list(self.reference_counts)
        self.ert = float(ert)
        self.max_checks = int(max_checks)
        self.min_expected = float(min_expected)
        self.spans = spans_for(self.max_checks)
        # Half the budget to the scan, split across features and spans (module docstring).
        self.alpha = 1.0 / (2.0 * self.ert * len(self.features) * len(self.spans))
        self.threshold = float(stats.norm.isf(self.alpha * len(self.spans)))
        self.blocks: list[dict[str, list[int]]] = []  # oldest first, at most max_checks
        self.statistics = dict.fromkeys(self.features, 0.0)
        self.last = dict(self.statistics)
        self.checks = 0

    def update(self, block_counts: Mapping[str, Sequence[int]]) -> list[str]:
        """Add one block's bin counts; return the features whose evidence crossed the threshold,
        strongest first. After an alarm the kept blocks are dropped for every feature, so the run
        length to the next false alarm is again the budgeted one. A feature absent from the block
        is counted as an empty block (it adds no evidence)."""
        self.checks += 1
        self.blocks.append({n: [int(c) for c in block_counts.get(n, ())] for n in self.features})
        del self.blocks[: -self.max_checks]
        self.statistics = {n: self._evidence(n) for n in self.features}
        alarmed = [n for n in self.features if self.statistics[n] > self.threshold]
        alarmed.sort(key=lambda n: -self.statistics[n])
        self.last = dict(self.statistics)  # as they stood at this check, before any reset
        if alarmed:
            self.reset()
        return alarmed

    def _evidence(self, name: str) -> float:
        """z = Phi^-1(1 - p_seq) of one feature over the spans the kept blocks cover."""
        reference = np.asarray(self.reference_counts[name], dtype=float)
        accumulated = np.zeros(reference.size)
        smallest = 1.0
        for age, block in enumerate(reversed(self.blocks), start=1):
            if block[name]:
                accumulated += np.asarray(block[name], dtype=float)
            if age in self.spans:
                p = chi_squared_counts(reference, accumulated, self.min_expected).p_value
                smallest = min(smallest, p)
        p_seq = min(1.0, smallest * len(self.spans))
        return max(0.0, float(stats.norm.isf(max(p_seq, 1e-300))))

    def reset(self) -> None:
        self.blocks = []
        self.statistics = dict.fromkeys(self.features, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Self:
        scan = cls(
            state["reference_counts"], state["ert"], state["max_checks"], state["min_expected"]
        )
        scan.blocks = [dict(block) for block in state["blocks"]]
        scan.statistics = dict(state["statistics"])
        scan.last = dict(state.get("last", scan.statistics))
        scan.checks = int(state["checks"])
        return scan


__all__ = ["MAX_CHECKS", "AlarmBudget", "SequentialScan", "spans_for"]

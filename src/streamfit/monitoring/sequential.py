"""Sequential drift monitoring: evidence accumulated across checks, with a false-alarm budget.

A window test at level alpha raises, on average, one false alarm every 1/alpha checks, and it
forgets everything between checks: a shift too small to clear one window is never caught. The
monitor therefore also keeps, per feature, the binned counts of the *disjoint* blocks of messages
that arrived at each of the last ``max_checks`` checks (``drift_every`` rows each), and at every
check tests the counts accumulated over the most recent 1, 2, 4, 8, ... blocks against the
reference's (chi-squared, sparse cells pooled as in the window test): a scan over candidate
change points, the last block being "now". A persistent shift's evidence grows with the rows
since it began, and the span that starts near the change uses all of them.

The budget is stated as an expected run time (ERT) in checks and shared: half goes to the window
test (its alpha per check is at most 1 / (2 ERT)), half to the scan, split evenly across the m
features and the L spans by Bonferroni. A feature alarms when

    p_seq = min(1, L * min_span p_span) < 1 / (2 ERT m),

so any check raises a sequential false alarm with probability at most 1 / (2 ERT), whatever the
correlation between the spans (they overlap) and the features, as long as each span's p-value
is valid: the union of the two halves expects at least ERT checks between false alarms. At so
small a level the bound is nearly tight (overlapping spans are almost independent in the far
tail), and a stream from a slightly different finite sample (adult.test against adult.data)
exceeds it: ``benchmarks/drift.py`` measures the run length on real data (README). After an
alarm the kept blocks are dropped, so the evidence restarts from zero.

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

from ._univariate import chi_squared_counts

#: Blocks (checks) kept by default: 16 x 250 messages, so a change up to 4,000 messages old
#: still has a span that starts at it.
MAX_CHECKS = 16


def spans_for(max_checks: int) -> list[int]:
    """The spans tested at each check: powers of two up to ``max_checks``, and ``max_checks``."""
    spans = [1 << i for i in range(max_checks.bit_length()) if 1 << i <= max_checks]
    return spans if spans[-1] == max_checks else [*spans, max_checks]


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

    @staticmethod
    def window_alpha(ert: float) -> float:
        """The window test's level per check under the same budget: the other half."""
        return 1.0 / (2.0 * ert)

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


__all__ = ["MAX_CHECKS", "SequentialScan", "spans_for"]

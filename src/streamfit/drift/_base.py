"""The drift-test family: one univariate two-sample test for one feature.

A test is fitted once on the reference column (training data of the served model) and keeps only
summary statistics in plain, JSON-serialisable attributes, so scoring a window never touches the
reference rows again and a fitted detector can be saved next to the model bundle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import pandas as pd

KINDS = ("numeric", "categorical")


@dataclass(frozen=True, slots=True)
class TestResult:
    """What one test says about one feature: its statistic and an (uncorrected) p-value."""

    __test__ = False  # not a pytest class, despite the name

    statistic: float
    p_value: float


class DriftTest(ABC):
    """Base class: ``fit`` on the reference column, then ``test`` any number of windows."""

    __test__ = False

    #: Registry name used by :func:`get_drift_test`.
    name: ClassVar[str]
    #: Feature kinds the test applies to.
    kinds: ClassVar[tuple[str, ...]] = KINDS

    def __init__(self, kind: str = "numeric") -> None:
        if kind not in self.kinds:
            raise ValueError(f"{type(self).__name__} does not apply to {kind!r} features")
        self.kind = kind

    @abstractmethod
    def fit(self, reference: pd.Series) -> Self:
        """Compute the reference statistics from the reference column."""

    @abstractmethod
    def test(self, current: pd.Series) -> TestResult:
        """Compare a window's column with the fitted reference."""

    def to_dict(self) -> dict[str, Any]:
        """Hyper-parameters and fitted state as plain JSON types."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        state = dict(state)
        state.pop("name", None)
        test = cls.__new__(cls)
        test.__dict__.update(state)
        return test

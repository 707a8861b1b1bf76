"""A tracker that records nothing: for benchmarks and tests where tracking is not the point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._base import Tracker


class NullTracker(Tracker):
    def start_round(self, name: str, tags: Mapping[str, str]) -> str | None:
        return None

    def log_trial(
        self, number: int, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        pass

    def end_round(self, status: str = "FINISHED") -> None:
        pass

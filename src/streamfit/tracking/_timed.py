"""A tracker wrapper that adds up the time spent in the tracker: MLflow's overhead on a round."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._base import Tracker
from ._null import NullTracker

if TYPE_CHECKING:
    from ..models.registry import ModelRegistry


class TimedTracker(Tracker):
    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.breakdown: dict[str, float] = {}  # method (or "plots") -> seconds
        # Figures only matter to a tracker that stores them.
        self.wants_artifacts = not isinstance(inner, NullTracker)

    @contextmanager
    def timing(self, what: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds += elapsed
            self.breakdown[what] = self.breakdown.get(what, 0.0) + elapsed

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(self.breakdown.items()))
        return f"{self.seconds:.1f}s ({parts})" if parts else "0s"

    def start_round(self, name: str, tags: Mapping[str, str]) -> str | None:
        with self.timing("start_round"):
            return self.inner.start_round(name, tags)

    def join_round(self, run_id: str | None) -> None:
        self.inner.join_round(run_id)

    def log_trial(
        self, number: int, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        with self.timing("log_trial"):
            self.inner.log_trial(number, params, metrics)

    def end_round(self, status: str = "FINISHED") -> None:
        with self.timing("end_round"):
            self.inner.end_round(status)

    def log_round(
        self,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        with self.timing("log_round"):
            self.inner.log_round(params, metrics, tags)

    def describe_round(self, text: str) -> None:
        with self.timing("describe_round"):
            self.inner.describe_round(text)

    def log_artifacts(self, directory: Path, path: str | None = None) -> None:
        with self.timing("log_artifacts"):
            self.inner.log_artifacts(directory, path)

    def log_model(self, bundle_dir: Path, input_example: Any, output_example: Any) -> int | None:
        with self.timing("log_model"):
            return self.inner.log_model(bundle_dir, input_example, output_example)

    @property
    def registry(self) -> ModelRegistry | None:
        return self.inner.registry

    def set_alias(self, alias: str, registry_version: int) -> None:
        with self.timing("set_alias"):
            self.inner.set_alias(alias, registry_version)

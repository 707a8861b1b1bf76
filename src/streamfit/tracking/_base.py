"""The experiment-tracking interface a training round reports to.

A round is one parent run; each trial is a light child run (params and metrics only). The
optional hooks (artifacts, the model, registry aliases) default to doing nothing, so a tracker
that only records numbers stays three methods long.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..models.registry import ModelRegistry


class Tracker(ABC):
    @abstractmethod
    def start_round(self, name: str, tags: Mapping[str, str]) -> str | None:
        """Open the parent run of a round; return its run id (None if the tracker has none)."""

    @abstractmethod
    def log_trial(
        self, number: int, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        """Record one trial as a child of the open round."""

    @abstractmethod
    def end_round(self, status: str = "FINISHED") -> None:
        """Close the round's run ("FINISHED" or "FAILED")."""

    def join_round(self, run_id: str | None) -> None:
        """Log trials under another process's open round (a search shared by trainers)."""

    def log_round(
        self,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Params, metrics and tags of the round itself."""

    def describe_round(self, text: str) -> None:
        """A description of the open round for people (Markdown): what triggered it and what
        the gate decided."""

    def log_artifacts(self, directory: Path, path: str | None = None) -> None:
        """Upload every file of ``directory`` to the round."""

    def log_model(
        self, bundle_dir: Path, input_example: pd.DataFrame, output_example: Any
    ) -> int | None:
        """Log the bundle's files as a model and register it, tagged with the bundle's SHA-256;
        return the registry version, or None for a tracker without a registry."""
        return None

    @property
    def registry(self) -> ModelRegistry | None:
        """The model registry :meth:`log_model` registers into, or None."""
        return None

    def set_alias(self, alias: str, registry_version: int) -> None:
        """Point a registry alias ("challenger", "champion") at a registered version."""

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Step metrics on an existing, possibly finished run: the monitor reports the served
        model's realised performance and drift to the run that trained it."""

    def log_run_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """One file (a drift chart) to an existing run."""

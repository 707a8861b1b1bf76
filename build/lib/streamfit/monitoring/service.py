"""``streamfit monitor``: the :class:`Monitor` wired to the served model.

* **Reference** = the served model's training data: adult.data without the gate's fixed holdout,
  plus the labelled observations in the store. It is rebuilt whenever the champion changes, so a
  shift the new model trained on stops alerting (as far as the observations weigh in the sample).
* **Calibrator** for the label-free estimate: isotonic, fitted on the champion's predictions of
  the fixed holdout (rows no model trained on), refitted with the reference.
* **MLflow**: every check's metrics (drift score, per-feature scores, realised performance over
  the window and per model version, the estimate) become step metrics of the *serving model's
  run* (the round that trained the champion, from its bundle manifest), and each drifted window's
  per-feature chart an artifact under ``drift/``. A tracking error is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..bundle import MANIFEST_FILE, BundleError, ModelStore
from ..data import FEATURE_COLUMNS, load_adult
from ..stores import ObservationStore
from .monitor import Monitor
from .performance import ProbabilityCalibrator

if TYPE_CHECKING:
    from ..bus import Bus
    from ..config import Settings
    from ..training.tracking import Tracker

log = logging.getLogger("streamfit.monitor")


def training_reference(settings: Settings, observations: ObservationStore) -> pd.DataFrame:
    """The rows the champion was trained on (approximately: every labelled observation so far)."""
    from ..training.gate import split_fixed_holdout

    original = load_adult("train")[[*FEATURE_COLUMNS, "label"]]
    train, _ = split_fixed_holdout(original, settings.holdout_fraction)
    observed = observations.labelled_frame()[list(FEATURE_COLUMNS)]
    parts = [train[list(FEATURE_COLUMNS)], observed]
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def champion_calibrator(settings: Settings, version: int | None) -> ProbabilityCalibrator | None:
    """Isotonic calibration of the champion on the fixed holdout; None without a usable model."""
    if version is None:
        return None
    from ..training.gate import split_fixed_holdout

    try:
        bundle = ModelStore(settings.models_dir).load(version)
    except BundleError as exc:
        log.warning("no calibration for v%s: %s", version, exc)
        return None
    _, holdout = split_fixed_holdout(load_adult("train"), settings.holdout_fraction)
    if len(holdout) < 100:  # holdout_fraction 0 (or nearly): nothing to calibrate on
        return None
    proba = bundle.predict_matrix(bundle.pipeline.transform(holdout))
    return ProbabilityCalibrator().fit(proba, holdout["label"].to_numpy())


class FollowChampion:
    """``Monitor.refresh`` hook: new reference and calibrator when the champion changes."""

    def __init__(self, settings: Settings, observations: ObservationStore) -> None:
        self.settings = settings
        self.observations = observations
        self.models = ModelStore(settings.models_dir)
        self.version = self.models.champion()

    def __call__(self, monitor: Monitor) -> None:
        version = self.models.champion()
        if version == self.version:
            return
        log.info(
            "champion is now v%s (was v%s): refitting the drift reference", version, self.version
        )
        self.version = version
        monitor.set_reference(training_reference(self.settings, self.observations))
        monitor.calibrator = champion_calibrator(self.settings, version)


class ServingRunLog:
    """Monitor metrics and charts to the MLflow run that trained the served model."""

    def __init__(self, settings: Settings, tracker: Tracker | None = None) -> None:
        self.settings = settings
        self.models = ModelStore(settings.models_dir)
        self._tracker = tracker
        self._runs: dict[int, str | None] = {}  # champion version -> its run id

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            from ..training.tracking import get_tracker  # MLflow imports slowly: on first use

            self._tracker = get_tracker(self.settings)
        return self._tracker

    def run_id(self) -> str | None:
        version = self.models.champion()
        if version is None:
            return None
        if version not in self._runs:
            try:
                manifest = json.loads((self.models.path(version) / MANIFEST_FILE).read_text())
            except (OSError, ValueError):
                return None
            self._runs[version] = manifest.get("mlflow_run_id")
        return self._runs[version]

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        run_id = self.run_id()
        if run_id is None:
            return
        try:
            self.tracker.log_run_metrics(run_id, metrics, step)
        except Exception as exc:  # a busy tracking store must not stop monitoring
            log.warning("could not log monitor metrics to run %s: %s", run_id, exc)

    def log_artifact(self, path: Path) -> None:
        run_id = self.run_id()
        if run_id is None:
            return
        try:
            self.tracker.log_run_artifact(run_id, path, "drift")
        except Exception as exc:
            log.warning("could not log %s to run %s: %s", path.name, run_id, exc)


def build_monitor(
    settings: Settings,
    bus: Bus,
    *,
    tracker: Tracker | None = None,
    track: bool = True,
) -> Monitor:
    """A monitor on ``settings``' observation store that follows the champion and, with
    ``track``, logs to the serving model's MLflow run (``tracker`` overrides MLflow)."""
    observations = ObservationStore(settings.store_url)
    follow = FollowChampion(settings, observations)
    sink = ServingRunLog(settings, tracker) if track else None
    return Monitor(
        settings,
        bus,
        training_reference(settings, observations),
        store=observations,
        log_metrics=sink.log_metrics if sink else None,
        log_artifact=sink.log_artifact if sink else None,
        calibrator=champion_calibrator(settings, follow.version),
        report_dir=settings.data_dir / "drift",
        refresh=follow,
    )


__all__ = [
    "FollowChampion",
    "ServingRunLog",
    "build_monitor",
    "champion_calibrator",
    "training_reference",
]

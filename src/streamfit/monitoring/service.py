"""``streamfit monitor``: the :class:`Monitor` wired to the served model.

* **Champion**: the registry's ``@champion``, its bundle fetched through the tracking server into
  the monitor's own ``<data_dir>/model-cache`` and verified, as a predictor does (no local
  pointer: the monitor may run on a machine of its own).
* **Reference** = the served model's training data: the data set's training rows
  (``streamfit.datasets``) without the gate's fixed holdout, plus the labelled observations in
  the store. It is rebuilt whenever the champion changes, so a
  shift the new model trained on stops alerting (as far as the observations weigh in the sample).
* **Calibrator** for the label-free estimate: isotonic, fitted on the champion's predictions of
  the fixed holdout (rows no model trained on), refitted with the reference.
* **MLflow**: every check's metrics (drift score, per-feature scores, realised performance over
  the window and per model version, the estimate) become step metrics of the *serving model's
  run* (the round that trained the champion, from its registered manifest), and each drifted
  window's per-feature chart an artifact under ``drift/``. A tracking error is logged, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..contract import task_of
from ..datasets import load_dataset, split_fixed_holdout
from ..models.bundle import BundleError, ModelBundle
from ..models.registry import ModelRegistry
from ..stores import ObservationStore, when_up
from .estimators import PerformanceEstimator, estimator_for
from .monitor import Monitor
from .output import OutputDrift, output_drift_for
from .performance import ProbabilityCalibrator

if TYPE_CHECKING:
    from ..bus import Bus
    from ..config import Settings
    from ..tracking import Tracker

log = logging.getLogger("streamfit.monitor")


def training_reference(settings: Settings, observations: ObservationStore) -> pd.DataFrame:
    """The rows the champion was trained on (approximately: the newest ``train_window``
    labelled observations so far, as a round takes them)."""
    features = list(load_dataset(settings).contract.features)
    train, _ = _fixed_holdout(settings)
    observed = observations.labelled_frame(limit=settings.train_window).reindex(columns=features)
    parts = [train[features], observed]
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def _fixed_holdout(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) of the data set's training rows, as every round splits them."""
    dataset = load_dataset(settings)
    stratified = task_of(dataset.contract).stratified
    return split_fixed_holdout(dataset.train, settings.holdout_fraction, stratified)


class ServedModel:
    """The registry's ``@champion`` as the monitor sees it: its version, and its bundle fetched
    through the tracking server into the monitor's own model cache (digest verified). The monitor
    shares no disk with the trainer, so it never reads a local champion pointer."""

    def __init__(self, settings: Settings, registry: ModelRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or ModelRegistry.from_settings(settings)
        self.version: int | None = None
        self.bundle: ModelBundle | None = None

    def refresh(self) -> bool:
        """Follow ``@champion``; True when it changed. A registry or download failure keeps
        what was there (and is logged): monitoring goes on."""
        try:
            entry = self.registry.champion()
        except Exception as exc:  # the tracking server down must not stop monitoring
            log.warning("registry unreachable, keeping champion v%s: %s", self.version, exc)
            return False
        version = entry.version if entry else None
        if version == self.version:
            return False
        self.version = version
        self.bundle = None
        if entry is not None:
            try:
                self.bundle, _ = self.registry.load(entry, self.settings.model_cache)
            except BundleError as exc:
                log.warning("champion v%s not loaded: %s", version, exc)
        return True

    @property
    def run_id(self) -> str | None:
        """The MLflow run of the round that trained the champion."""
        return None if self.bundle is None else self.bundle.manifest.get("mlflow_run_id")


def champion_calibrator(
    settings: Settings, bundle: ModelBundle | None
) -> ProbabilityCalibrator | None:
    """Isotonic calibration of the champion on the fixed holdout; None without a usable model."""
    if bundle is None or bundle.rules.name != "binary":
        return None
    _, holdout = _fixed_holdout(settings)
    if len(holdout) < 100:  # holdout_fraction 0 (or nearly): nothing to calibrate on
        return None
    proba = bundle.predict_matrix(bundle.pipeline.transform(holdout))
    return ProbabilityCalibrator().fit(proba, holdout["label"].to_numpy())


def champion_output(settings: Settings, bundle: ModelBundle | None) -> OutputDrift | None:
    """Output and label drift reference: the champion's predictions on the fixed holdout (its
    task's tests: probabilities, classes or values)."""
    if bundle is None:
        return None
    _, holdout = _fixed_holdout(settings)
    if len(holdout) < 100:
        return None
    outputs = bundle.predict_matrix(bundle.pipeline.transform(holdout))
    return output_drift_for(bundle.rules.name).fit(outputs, holdout["label"].to_numpy())


def champion_estimator(
    settings: Settings, bundle: ModelBundle | None
) -> PerformanceEstimator | None:
    """The label-free estimator of a multiclass (CBPE) or regression (DLE) champion, fitted on
    its predictions of the fixed holdout; None for binary (the calibrator's estimate) or
    without a usable model."""
    if bundle is None or bundle.rules.name == "binary":
        return None
    _, holdout = _fixed_holdout(settings)
    if len(holdout) < 20:
        return None
    outputs = bundle.predict_matrix(bundle.pipeline.transform(holdout))
    estimator = estimator_for(bundle.rules.name)
    features = holdout[list(bundle.contract.features)] if estimator.needs_features else None
    return estimator.fit(outputs, holdout["label"].to_numpy(), features)


class FollowChampion:
    """``Monitor.refresh`` hook: new reference and calibrator when the champion changes."""

    def __init__(
        self, settings: Settings, observations: ObservationStore, served: ServedModel
    ) -> None:
        self.settings = settings
        self.observations = observations
        self.served = served
        self.served.refresh()

    @property
    def version(self) -> int | None:
        return self.served.version

    def __call__(self, monitor: Monitor) -> None:
        previous = self.served.version
        changed = self.served.refresh()
        if self.served.version is not None:
            monitor.metrics.champion_version.set(self.served.version)
        if not changed:
            return
        log.log(
            logging.DEBUG if previous is None else logging.INFO,
            "champion is now v%s (was v%s): refitting the drift reference",
            self.served.version,
            previous,
        )
        monitor.set_reference(training_reference(self.settings, self.observations))
        monitor.calibrator = champion_calibrator(self.settings, self.served.bundle)
        monitor.output = champion_output(self.settings, self.served.bundle)
        monitor.model = self.served.bundle
        monitor.estimator = champion_estimator(self.settings, self.served.bundle)


class ServingRunLog:
    """Monitor metrics and charts to the MLflow run that trained the served model."""

    def __init__(
        self, settings: Settings, served: ServedModel, tracker: Tracker | None = None
    ) -> None:
        self.settings = settings
        self.served = served
        self._tracker = tracker

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            from ..tracking import get_tracker  # MLflow imports slowly: on first use

            self._tracker = get_tracker(self.settings)
        return self._tracker

    def run_id(self) -> str | None:
        return self.served.run_id

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
    # Started with or before its database (a host booting): waits for it, as the recorder.
    observations = when_up(settings.store_url, ObservationStore)
    served = ServedModel(settings)
    follow = FollowChampion(settings, observations, served)
    sink = ServingRunLog(settings, served, tracker) if track else None
    return Monitor(
        settings,
        bus,
        training_reference(settings, observations),
        store=observations,
        log_metrics=sink.log_metrics if sink else None,
        log_artifact=sink.log_artifact if sink else None,
        calibrator=champion_calibrator(settings, served.bundle),
        output=champion_output(settings, served.bundle),
        report_dir=settings.data_dir / "drift",
        refresh=follow,
        contract=load_dataset(settings).contract,
        model=served.bundle,
        estimator=champion_estimator(settings, served.bundle),
    )


__all__ = [
    "FollowChampion",
    "ServedModel",
    "ServingRunLog",
    "build_monitor",
    "champion_calibrator",
    "champion_estimator",
    "champion_output",
    "training_reference",
]

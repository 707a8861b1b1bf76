"""The monitor service: drift and performance of the served model, off the predictor's hot path.

It runs in its own thread (or process) and only *reads* the observation store the predictors
append to: every ``drift_every`` new observations it scores the latest ``drift_window`` requests
against the reference (the served model's training data), computes realised performance over the
last ``performance_window`` labelled observations and per model version, estimates performance of
the unlabelled requests (CBPE), then publishes a drift event, logs one line and, if given, hands a
metric series to a tracking callback (MLflow stays optional). When checks fall behind a fast
stream it scores the latest window and skips the backlog rather than queueing work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from ..drift.detector import DriftDetector
from ..drift.report import DriftReport
from ..ops.health import Health
from ..ops.metrics import MonitorMetrics
from ..stores import ObservationStore
from .output import OutputDrift
from .performance import (
    ProbabilityCalibrator,
    estimate_performance,
    metrics_by_version,
    realised_metrics,
    realised_performance,
)
from .sequential import AlarmBudget, SequentialScan

if TYPE_CHECKING:
    from ..bus import Bus, Producer
    from ..config import Settings
    from ..contract import Contract
    from ..models.bundle import ModelBundle
    from .estimators import PerformanceEstimator

logger = logging.getLogger("streamfit.monitor")

LogMetrics = Callable[[dict[str, float], int], None]

# Between checks, how often the monitor asks the registry whether the champion changed.
_FOLLOW_EVERY_S = 10.0


def alarm_budget(settings: Settings, contract: Contract) -> AlarmBudget:
    """The monitor's false-alarm budget: ``drift_ert`` checks between false alarms, over the
    contract's watched (numeric and categorical) columns; see :class:`AlarmBudget`."""
    watched = sum(c.kind in ("numeric", "categorical") for c in contract.columns)
    return AlarmBudget(settings.drift_ert, watched)


def detector_from_settings(
    settings: Settings, contract: Contract, *, monitor: bool = False
) -> DriftDetector:
    """An unfitted detector configured by the ``drift_*`` settings, over ``contract``'s columns.
    ``monitor``: for repeated checks, whose feature and classifier tests get their share of the
    window's half of the false-alarm budget (:attr:`AlarmBudget.window_tests`, 0.0021 at the
    default ERT 200 over Adult's 14 features)."""
    alpha = settings.drift_alpha
    if monitor:
        alpha = min(alpha, alarm_budget(settings, contract).window_tests)
    return DriftDetector.from_settings(settings, contract, alpha=alpha)


class Monitor:
    """Background drift and performance monitor.

    ``log_metrics(metrics, step)`` receives one flat dict of floats per check, ``step`` being the
    number of observations in the store (so a restarted monitor continues the series); for example
    MLflow step metrics of the serving model's run. ``report_dir``, when given, gets the
    per-feature chart of every drifted window, also passed to ``log_artifact`` if given.
    ``refresh(monitor)``, when given, runs before each check, e.g. to refit the reference when the
    served model changes (see :mod:`streamfit.monitoring.service`).
    """

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        reference_frame: pd.DataFrame,
        *,
        contract: Contract,
        store: ObservationStore | None = None,
        log_metrics: LogMetrics | None = None,
        log_artifact: Callable[[Path], None] | None = None,
        calibrator: ProbabilityCalibrator | None = None,
        output: OutputDrift | None = None,
        report_dir: Path | None = None,
        history: int = 100_000,
        refresh: Callable[[Monitor], None] | None = None,
        metrics: MonitorMetrics | None = None,
        model: ModelBundle | None = None,
        estimator: PerformanceEstimator | None = None,
    ) -> None:
        self.settings = settings
        self.contract = contract  # the served model's columns and task
        self.metrics = metrics if metrics is not None else MonitorMetrics()
        # A check on a big window takes seconds to minutes: only a loop silent far longer is
        # stuck.
        self.health = Health(self.metrics, stall_s=600.0)
        self.bus = bus
        self.store = store if store is not None else ObservationStore(settings.store_url)
        self.log_metrics = log_metrics
        self.log_artifact = log_artifact
        self.calibrator = calibrator
        self.model = model  # the served model (multiclass: its class probabilities again)
        self.estimator = estimator  # the label-free estimate of a multiclass or regression model
        self.output = output  # the served model's reference predictions, for output drift
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.history = history  # labelled rows kept for per-version metrics
        self.refresh = refresh
        self.detector = detector_from_settings(settings, contract, monitor=True).fit(
            reference_frame
        )
        self.sequential = SequentialScan(self.detector.reference_counts, settings.drift_ert)
        self.running = False
        self.step = 0
        self.last_count = 0
        self._follow_at = 0.0  # monotonic time the champion is next looked for between checks
        self.alarm_count = 0  # observations in the store at the last alarm: the restart point
        self.latest: DriftReport | None = None
        self.latest_metrics: dict[str, float] = {}
        self._lock = threading.Lock()  # guards the detector against set_reference mid-check
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None

    def set_reference(
        self, reference_frame: pd.DataFrame, contract: Contract | None = None
    ) -> None:
        """Refit on a newly promoted model's training data, so absorbed shifts stop alerting;
        ``contract``: the new model's, when its columns changed."""
        if contract is not None:
            self.contract = contract
        detector = detector_from_settings(self.settings, self.contract, monitor=True)
        detector = detector.fit(reference_frame)
        with self._lock:
            self.detector = detector
            self.sequential = SequentialScan(detector.reference_counts, self.settings.drift_ert)

    # -- one check -------------------------------------------------------------------------------
    def run_once(self, force: bool = False) -> DriftReport | None:
        """Check if ``drift_every`` new observations arrived (or ``force``); return the report."""
        count = self.store.count()
        due = force or (count - self.last_count >= self.settings.drift_every and count > 0)
        # Follow the champion before each check, and every _FOLLOW_EVERY_S between checks (a
        # promotion shows in the monitor's gauges while no traffic comes), not at every poll:
        # a registry call each second cost the monitor CPU while nothing was checked.
        if self.refresh is not None and (due or time.monotonic() >= self._follow_at):
            self.refresh(self)  # refitting the reference may take seconds: count from its end
            self._follow_at = time.monotonic() + _FOLLOW_EVERY_S
        if not due:
            return None
        started = time.perf_counter()
        # After an alarm the window holds only requests that came after it (AlarmBudget): no
        # request takes part in two alarms, so one unlucky stretch raises one, not four.
        rows = AlarmBudget.window_rows(self.settings.drift_window, count - self.alarm_count)
        window = self.store.recent_frame(rows)
        if window.empty:
            return None
        # The sequential layer sees the disjoint block of rows new since the last check (at most
        # a window's worth when checks fall behind), so its blocks are independent under no drift.
        new_rows = min(count - self.last_count, len(window))
        block = window.tail(new_rows) if new_rows > 0 else window.iloc[0:0]
        self.last_count = count
        self.step += 1
        # Read once per check, for the label tests and the realised metrics alike (two reads of
        # up to ``history`` rows were a third of a check's CPU on a long-running store).
        labelled = self.store.labelled_outcomes(self.history)
        with self._lock:
            report = self.detector.score(window, window_end=count)
            if len(block):
                alarmed = self.sequential.update(self.detector.feature_counts(block))
                report.add_sequential(alarmed, self.sequential)
            if self.output is not None:
                self._output_drift(report, window, labelled)
            if report.drifted:  # whichever source fired, both restart
                self.alarm_count = count
                self.sequential.reset()
        metrics = self._metrics(report, window, labelled)
        self._publish(report)
        top = ", ".join(f"{n}={report.features[n].score:.2f}" for n in report.ranking()[:3])
        shown = {"binary": ("accuracy", "auc"), "multiclass": ("accuracy", "log_loss")}
        names = shown.get(self.task, ("rmse", "mae"))

        def performance(source: str) -> str:
            return " ".join(f"{n} {metrics.get(f'{source}.{n}', math.nan):.3f}" for n in names)

        logger.info(
            "drift check %d at %d observations: drifted=%s drift=%.3f (p=%.2g) features [%s] "
            "drifted features %s; realised on last %d labelled: %s; "
            "estimated on %d unlabelled: %s (%.2fs)",
            self.step,
            count,
            report.drifted,
            report.drift,
            report.p_value,
            top,
            report.drifted_features,
            metrics.get("realised.n", 0),
            performance("realised"),
            metrics.get("estimated.n", 0),
            performance("estimated"),
            report.seconds,
        )
        if report.drifted and self.report_dir is not None:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            chart = self.report_dir / f"drift-{count}.png"
            report.chart_png(chart)
            if self.log_artifact is not None:
                self.log_artifact(chart)
        if self.log_metrics is not None:
            self.log_metrics(metrics, count)
        self.latest, self.latest_metrics = report, metrics
        self._export(report, metrics, window, count, time.perf_counter() - started)
        return report

    def _export(
        self,
        report: DriftReport,
        metrics: dict[str, float],
        window: pd.DataFrame,
        count: int,
        seconds: float,
    ) -> None:
        """The check's results as Prometheus gauges (what /metrics serves)."""
        exported = self.metrics
        exported.checks.inc()
        exported.check_seconds.observe(seconds)
        exported.last_check.set(time.time())
        exported.observations.set(count)
        exported.drifted.set(int(bool(report.drifted)))
        exported.drifted_features.set(len(report.drifted_features))
        if math.isfinite(report.drift):
            exported.drift_score.set(report.drift)
        for name, feature in report.features.items():
            if math.isfinite(feature.score):
                exported.feature_drift_score.labels(name).set(feature.score)
        exported.labelled_ratio.set(float(window["label"].notna().mean()))
        for source in ("realised", "estimated"):
            for gauge, name in (
                (exported.accuracy, "accuracy"),
                (exported.auc, "auc"),
                (exported.log_loss, "log_loss"),
            ):
                key = f"{source}.{name}"
                if key in metrics:  # NaN (undefined) values are left out of ``metrics``
                    gauge.labels(source).set(metrics[key])

    def _output_drift(
        self, report: DriftReport, window: pd.DataFrame, labelled: pd.DataFrame
    ) -> None:
        """Output drift on the window's probabilities, label drift on the latest labelled rows.
        Each of the three tests (output, label share, calibration) runs at the detector's alpha
        / (m + 1), m the watched features: with the detector at (m + 1) / (m + 4) of the
        window's share (AlarmBudget), the window's m + 4 tests spend exactly that share."""
        if self.output is None:
            return
        alpha = self.detector.alpha / (len(self.detector.kinds) + 1)
        if self.task != "binary":  # the task's outputs: class probabilities or values
            recent = labelled.tail(self.settings.performance_window)
            if self.task == "multiclass":
                recent = self.store.labelled_frame(limit=self.settings.performance_window)
            recent = recent.dropna(subset=["label"])
            output = self.output.test_output(self._outputs(window), alpha)
            labels = None
            if len(recent):
                labels = self.output.test_labels(
                    self._outputs(recent), recent["label"].to_numpy(dtype=float), alpha
                )
            report.add_output(output, labels)
            return
        output = self.output.test_output(window["probability"].to_numpy(dtype=float), alpha)
        labelled = labelled.tail(self.settings.performance_window)
        labels = self.output.test_labels(
            labelled["probability"].to_numpy(dtype=float),
            labelled["label"].to_numpy(dtype=float),
            alpha,
        )
        report.add_output(output, labels)

    def _metrics(
        self, report: DriftReport, window: pd.DataFrame, labelled: pd.DataFrame
    ) -> dict[str, float]:
        metrics: dict[str, float] = {
            "drift.score": report.drift,
            "drift.auc": report.auc,
            "drift.drifted": float(report.drifted),
            "drift.drifted_features": float(len(report.drifted_features)),
            "drift.sequential_drifted": float(bool(report.sequential_features)),
        }
        metrics.update({f"drift.sequential.{n}": v for n, v in report.sequential.items()})
        for layer, values in (("output", report.output), ("labels", report.labels)):
            for key, value in (values or {}).items():
                if isinstance(value, bool | int | float):
                    metrics[f"drift.{layer}.{key}"] = float(value)
        metrics.update({f"drift.feature.{n}": f.score for n, f in report.features.items()})
        recent = labelled.tail(self.settings.performance_window)
        if self.task != "binary":
            metrics.update(self._task_metrics(window, recent))
            return {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(v)}
        realised = realised_metrics(recent["label"].to_numpy(), recent["probability"].to_numpy())
        metrics.update({f"realised.{k}": v for k, v in realised.items()})
        for version, values in metrics_by_version(labelled).items():
            metrics.update({f"version.{version}.{k}": v for k, v in values.items()})
        # The estimate is for requests whose labels are not in yet; in demo mode every request
        # carries its label, and the whole window stands in.
        unlabelled = window[window["label"].isna()]
        target = unlabelled if len(unlabelled) else window
        estimated = estimate_performance(
            target["probability"].dropna().to_numpy(), calibrator=self.calibrator
        )
        metrics.update({f"estimated.{k}": v for k, v in estimated.items()})
        return {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(v)}

    @property
    def task(self) -> str:
        return self.contract.task

    def _task_metrics(self, window: pd.DataFrame, recent: pd.DataFrame) -> dict[str, float]:
        """Multiclass and regression: realised metrics over the latest labelled rows, and the
        estimator's (CBPE, DLE) on the unlabelled ones. A multiclass prediction is stored as
        its class: the served model gives the rows' class probabilities again."""
        metrics: dict[str, float] = {}
        if self.task == "multiclass":  # the rows themselves, for the model to score again
            recent = self.store.labelled_frame(limit=self.settings.performance_window)
        recent = recent.dropna(subset=["label"])
        if len(recent):
            realised = realised_performance(
                self.task, recent["label"].to_numpy(), self._outputs(recent)
            )
            metrics.update({f"realised.{k}": v for k, v in realised.items()})
        unlabelled = window[window["label"].isna()]
        target = unlabelled if len(unlabelled) else window
        if self.estimator is not None and len(target):
            features = target if self.estimator.needs_features else None
            estimated = self.estimator.estimate(self._outputs(target), features)
            metrics.update({f"estimated.{k}": v for k, v in estimated.items()})
        return metrics

    def _outputs(self, rows: pd.DataFrame) -> np.ndarray:
        if self.task == "regression" or self.model is None:
            return rows["probability"].to_numpy(dtype=float)
        return self.model.predict_matrix(self.model.pipeline.transform(rows))

    def _publish(self, report: DriftReport) -> None:
        if self._producer is None:
            self._producer = self.bus.producer()  # created on first use: no I/O in __init__
        self._producer.produce(self.settings.topics.drift, orjson.dumps(report.to_event()))
        self._producer.flush()

    # -- service loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Check until :meth:`stop`; an error in one check is logged, never fatal."""
        if self._thread is not threading.current_thread():
            self.running = True  # called directly; start() already set it, and a stop() that
            # came before the thread got going must not be undone here
        if self.running:
            self.health.starting()
        with contextlib.ExitStack() as stack:
            stack.callback(self._close_producer)
            stack.callback(self.health.finished)
            if self.last_count == 0:
                self.last_count = self._resume_point()
            while self.running:
                self.health.beat()
                self.health.set_ready(True)  # it checks whenever enough has come in
                try:
                    self.run_once()
                except Exception:
                    self.metrics.check_failures.inc()
                    logger.exception("drift check failed; the monitor keeps running")
                self._wake.wait(self.settings.monitor_poll_seconds)

    def _resume_point(self) -> int:
        """Where the last monitor left off: the ``window_end`` of the newest drift event on the
        topic, so a restarted monitor (or its replacement) does not repeat that check. Ignored
        when the store holds fewer observations (a store started afresh)."""
        last, alarmed = 0, False
        try:
            with self.bus.consumer([self.settings.topics.drift], group=None, replay=1) as tail:
                while batch := tail.poll(10, timeout=0.5):
                    for message in batch:
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            event = orjson.loads(message.value)
                            end = int(event["window_end"])
                            if end >= last:
                                last, alarmed = end, event.get("drifted") is True
        except Exception as exc:  # the drift topic unreadable: check from scratch
            logger.warning("could not read the last drift event: %s", exc)
            return 0
        if not 0 < last <= self.store.count():
            return 0
        logger.info("resuming after the drift check at %d observations", last)
        if alarmed:  # that check alarmed: its rows must not raise the next alarm too
            self.alarm_count = last
        return last

    def start(self) -> Monitor:
        """Run in a daemon thread; returns self."""
        self.running = True
        self._wake.clear()
        self._thread = threading.Thread(target=self.run, name="streamfit-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to end (safe from a signal handler) and wait for the thread if any."""
        self.health.stopping()
        self.running = False
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def close(self) -> None:
        """Stop, then release the producer (a check run after :meth:`stop` creates one)."""
        self.stop()
        self._close_producer()

    def _close_producer(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> dict[str, Any]:
        """Latest metrics and event, for a service's metrics endpoint."""
        return {
            "step": self.step,
            "observations": self.last_count,
            "metrics": dict(self.latest_metrics),
            "event": self.latest.to_event() if self.latest is not None else None,
        }


__all__ = ["LogMetrics", "Monitor", "alarm_budget", "detector_from_settings"]

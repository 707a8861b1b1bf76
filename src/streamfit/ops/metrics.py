"""Every Prometheus metric streamfit exports, defined in one place.

Each service owns one metrics object holding its own :class:`~prometheus_client.CollectorRegistry`
(never the process-wide default registry: tests and the demo run several services in one
process, and nothing here writes process-global state). The objects are thread-safe: counters,
gauges and histograms take their own locks, so the loop, the model watcher and the compiler thread
may all update them. The services update them per batch (not per message) to keep the hot path's
cost down; the per-request latency histogram takes a whole batch at once
(:class:`BatchHistogram`).

Names follow Prometheus conventions: the ``streamfit_`` prefix, then the service, base units
(seconds, ratios 0..1), ``_total`` on counters, ``_seconds`` on durations, ``_timestamp_seconds``
on points in time (Unix time). Alert rules and dashboards are built on these names: they are
stable.

=================================================  =========  =================================
name                                               type       labels / meaning
=================================================  =========  =================================
**predictor**
``streamfit_predictions_total``                    counter    predictions produced
``streamfit_predictor_requests_total``             counter    request messages consumed
``streamfit_predictor_dead_letters_total``         counter    ``reason_class``: ``invalid``
                                                              (not a valid request),
                                                              ``unpredictable`` (the model
                                                              cannot take its values),
                                                              ``error`` (an unexpected error)
``streamfit_predictor_batches_total``              counter    micro-batches handled
``streamfit_predictor_batch_size``                 histogram  messages per micro-batch
``streamfit_predictor_batch_seconds``              histogram  time to handle one micro-batch
                                                              (decode, predict, produce, ack,
                                                              commit)
``streamfit_prediction_latency_seconds``           histogram  end to end: the request's Kafka
                                                              timestamp to its answer
                                                              (prediction or dead letter)
                                                              produced
``streamfit_predictor_model_version``              gauge      registry version serving
``streamfit_predictor_model_compiled``             gauge      1 while a compiled copy serves
``streamfit_predictor_model_loaded_timestamp_seconds``  gauge  when the serving model was
                                                              swapped in
``streamfit_predictor_model_swaps_total``          counter    models swapped in
``streamfit_predictor_models_refused_total``       counter    ``reason``: ``integrity`` (files
                                                              not matching their SHA-256),
                                                              ``invalid``, ``error``
``streamfit_predictor_compiled_models_total``      counter    compiled copies swapped in
``streamfit_predictor_compile_refusals_total``     counter    models left on LightGBM
``streamfit_predictor_shadow_predictions_total``   counter    predictions carrying a shadowed
                                                              challenger's score
``streamfit_predictor_canary_predictions_total``   counter    of which: answered by the
                                                              challenger (canary mode)
``streamfit_predictor_consumer_lag``               gauge      ``topic``, ``partition``:
                                                              messages not consumed yet
``streamfit_predictor_ready``                      gauge      1 while ``/readyz`` answers 200
**recorder**
``streamfit_recorder_messages_total``              counter    ``kind``: ``request``,
                                                              ``prediction``, ``label``
``streamfit_recorder_dead_letters_total``          counter    messages it could not record
``streamfit_recorder_batches_total``               counter    batches recorded
``streamfit_recorder_labelled_observations``       gauge      labelled rows in the store
``streamfit_recorder_pending_labels``              gauge      labels whose request is not seen
``streamfit_recorder_retrain_commands_total``      counter    retrain commands published
``streamfit_recorder_store_retries_total``         counter    batches retried (store down)
``streamfit_recorder_consumer_lag``                gauge      ``topic``, ``partition``
``streamfit_recorder_ready``                       gauge      1 while ``/readyz`` answers 200
**trainer**
``streamfit_trainer_rounds_total``                 counter    ``trigger``: ``retrain``,
                                                              ``drift``...; ``decision``:
                                                              ``promoted``, ``refused``,
                                                              ``failed``
``streamfit_trainer_refused_rounds_in_a_row``      gauge      rounds refused by the gate since
                                                              the last promotion
``streamfit_trainer_trials_total``                 counter    hyper-parameter trials run
``streamfit_trainer_round_seconds``                histogram  one round, search to gate
``streamfit_trainer_retrain_commands_total``       counter    retrain commands received
``streamfit_trainer_drift_alarms_total``           counter    drift events with drifted=true
``streamfit_trainer_champion_version``             gauge      registry version of @champion
``streamfit_trainer_last_cv_loss``                 gauge      the last round's best CV loss:
                                                              log loss, or RMSE for regression
``streamfit_trainer_last_holdout_loss``            gauge      its challenger's gate holdout
                                                              loss (log loss, or RMSE)
``streamfit_trainer_last_test_auc``                gauge      its AUC on the data set's test
                                                              rows (binary tasks only)
``streamfit_trainer_last_round_timestamp_seconds``  gauge     when the last round ended
``streamfit_trainer_last_promotion_timestamp_seconds``  gauge  when it last promoted a model
``streamfit_trainer_ready``                        gauge      1 while ``/readyz`` answers 200
**monitor**
``streamfit_monitor_drift_score``                  gauge      the domain classifier's score
                                                              (0 none .. 1 fully separable)
``streamfit_monitor_drifted``                      gauge      1 if the last check alarmed
``streamfit_monitor_drifted_features``             gauge      features found drifting
``streamfit_monitor_feature_drift_score``          gauge      ``feature``: per-feature score
``streamfit_monitor_accuracy``                     gauge      ``source``: ``realised`` (labelled
                                                              window) or ``estimated`` (CBPE,
                                                              unlabelled requests)
``streamfit_monitor_auc``                          gauge      ``source``: as above
``streamfit_monitor_log_loss``                     gauge      ``source``: ``realised`` only
``streamfit_monitor_labelled_ratio``               gauge      labelled share of the window
``streamfit_monitor_observations``                 gauge      observations in the store
``streamfit_monitor_champion_version``             gauge      version the checks are about
``streamfit_monitor_checks_total``                 counter    drift checks run
``streamfit_monitor_check_failures_total``         counter    checks that raised
``streamfit_monitor_check_seconds``                histogram  one check's duration
``streamfit_monitor_last_check_timestamp_seconds``  gauge     when the last check ended
``streamfit_monitor_ready``                        gauge      1 while ``/readyz`` answers 200
=================================================  =========  =================================

Model age is ``time() - streamfit_predictor_model_loaded_timestamp_seconds`` (how long the
served model has been serving) or ``time() - streamfit_trainer_last_promotion_timestamp_seconds``.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..bus import Message

# Bucket bounds, in base units.
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ROUND_SECONDS_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
CHECK_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

DEAD_LETTER_CLASSES = ("invalid", "unpredictable", "error")
REFUSAL_REASONS = ("integrity", "invalid", "error")
RECORDED_KINDS = ("request", "prediction", "label")
ROUND_DECISIONS = ("promoted", "refused", "failed")
PERFORMANCE_SOURCES = ("realised", "estimated")

_timestamp = operator.attrgetter("timestamp")  # of a Message: map() calls it with no frame


class BatchHistogram(Collector):
    """A histogram that takes a whole batch of observations in one call (vectorised bucketing
    with NumPy, one lock per batch), for per-message values on a per-batch budget.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> registry = CollectorRegistry()
    >>> latency = BatchHistogram("demo_seconds", "Latency.", (0.1, 1.0), registry)
    >>> latency.observe_many([0.05, 0.1, 0.5, 3.0])
    >>> latency.count, latency.buckets()
    (4, [2, 3, 4])
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError(f"buckets must be increasing and not empty, got {buckets}")
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=float)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one: +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Sequence[float] | np.ndarray) -> None:
        """Add every value of ``values`` (a Prometheus bucket counts values <= its bound)."""
        array = np.asarray(values, dtype=float)
        if array.size == 0:
            return
        counts = np.bincount(
            np.searchsorted(self.bounds, array, side="left"), minlength=len(self._counts)
        )
        total = float(array.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    @property
    def count(self) -> int:
        with self._lock:
            return int(self._counts.sum())

    def buckets(self) -> list[int]:
        """Cumulative counts per bound, +Inf last."""
        with self._lock:
            return np.cumsum(self._counts).tolist()

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        labels = [_bound(b) for b in self.bounds] + ["+Inf"]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(labels, cumulative, strict=True)), total)
        yield family


def _bound(value: float) -> str:
    return repr(float(value))


class ServiceMetrics:
    """The metrics of one service, in a registry of their own (``registry`` to share one).

    ``ready`` mirrors the service's readiness (the ``/readyz`` answer) as a gauge, so that
    Prometheus can alert on a service that is up but not serving."""

    service = "service"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.ready = Gauge(
            f"streamfit_{self.service}_ready",
            f"1 while the {self.service} is ready (its /readyz answers 200), else 0.",
            registry=self.registry,
        )

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of one sample (0 when it has none yet), e.g.
        ``value("streamfit_predictions_total")``: for tests, summaries and the demo."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found


class PredictorMetrics(ServiceMetrics):
    service = "predictor"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.predictions = Counter("streamfit_predictions", "Predictions produced.", registry=r)
        self.requests = Counter(
            "streamfit_predictor_requests", "Request messages consumed.", registry=r
        )
        self.dead_letters = Counter(
            "streamfit_predictor_dead_letters",
            "Requests dead-lettered, by reason class (invalid, unpredictable, error).",
            ["reason_class"],
            registry=r,
        )
        for reason_class in DEAD_LETTER_CLASSES:  # every series exists from the start (0)
            self.dead_letters.labels(reason_class)
        self.batches = Counter("streamfit_predictor_batches", "Micro-batches handled.", registry=r)
        self.batch_size = Histogram(
            "streamfit_predictor_batch_size",
            "Messages per micro-batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "streamfit_predictor_batch_seconds",
            "Time to handle one micro-batch: decode, predict, produce, acknowledge, commit.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.latency = BatchHistogram(
            "streamfit_prediction_latency_seconds",
            "End-to-end latency: from the request's Kafka timestamp to its answer (prediction, "
            "or dead letter) produced.",
            LATENCY_BUCKETS,
            r,
        )
        self.model_version = Gauge(
            "streamfit_predictor_model_version",
            "Registry version of the model serving (0 before the first).",
            registry=r,
        )
        self.model_compiled = Gauge(
            "streamfit_predictor_model_compiled",
            "1 while a compiled copy of the model serves, 0 on LightGBM.",
            registry=r,
        )
        self.model_loaded = Gauge(
            "streamfit_predictor_model_loaded_timestamp_seconds",
            "Unix time the serving model was swapped in (its age: time() minus this).",
            registry=r,
        )
        self.swaps = Counter("streamfit_predictor_model_swaps", "Models swapped in.", registry=r)
        self.models_refused = Counter(
            "streamfit_predictor_models_refused",
            "Models refused (the old one kept serving), by reason (integrity, invalid, error).",
            ["reason"],
            registry=r,
        )
        for reason in REFUSAL_REASONS:
            self.models_refused.labels(reason)
        self.compiled_models = Counter(
            "streamfit_predictor_compiled_models",
            "Compiled copies of a model swapped in.",
            registry=r,
        )
        self.shadow_predictions = Counter(
            "streamfit_predictor_shadow_predictions",
            "Predictions that carried a shadowed challenger's score.",
            registry=r,
        )
        self.canary_predictions = Counter(
            "streamfit_predictor_canary_predictions",
            "Of those, predictions answered by the challenger (canary mode).",
            registry=r,
        )
        self.compile_refusals = Counter(
            "streamfit_predictor_compile_refusals",
            "Models left on LightGBM: compiling failed or did not match.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "streamfit_predictor_consumer_lag",
            "Request messages on the partition not consumed yet.",
            ["topic", "partition"],
            registry=r,
        )
        self._lagging: set[tuple[str, int]] = set()

    def observe_batch(self, requests: Sequence[Message], predicted: int) -> None:
        """One micro-batch answered: ``predicted`` predictions produced for ``requests``.
        Called once per batch; the per-request latency is bucketed with NumPy."""
        now = time.time()
        size = len(requests)
        self.batches.inc()
        self.requests.inc(size)
        self.batch_size.observe(size)
        if predicted:
            self.predictions.inc(predicted)
        stamps = np.fromiter(map(_timestamp, requests), dtype=float, count=size)
        known = stamps[stamps > 0]  # 0.0: the transport did not say
        if known.size:
            self.latency.observe_many(now - known)

    def dead_lettered(self, reason_class: str) -> None:
        self.dead_letters.labels(reason_class).inc()

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        self._lagging = _set_lags(self.consumer_lag, self._lagging, lags)


class NullPredictorMetrics(PredictorMetrics):
    """A predictor's metrics with the per-batch instrumentation turned off: the benchmark's
    baseline for what instrumentation costs (``metrics_overhead``)."""

    def observe_batch(self, requests: Sequence[Message], predicted: int) -> None:
        pass

    def dead_lettered(self, reason_class: str) -> None:
        pass


def _set_lags(
    gauge: Gauge, previous: set[tuple[str, int]], lags: Mapping[tuple[str, int], int]
) -> set[tuple[str, int]]:
    """Set one series per partition; drop those of partitions no longer assigned (a rebalance
    moved them to another member, whose own series now tells their lag)."""
    for topic, partition in previous - set(lags):
        gauge.remove(topic, str(partition))
    for (topic, partition), lag in lags.items():
        gauge.labels(topic, str(partition)).set(lag)
    return set(lags)


class RecorderMetrics(ServiceMetrics):
    service = "recorder"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.messages = Counter(
            "streamfit_recorder_messages",
            "Messages recorded in the observation store, by kind (request, prediction, label).",
            ["kind"],
            registry=r,
        )
        for kind in RECORDED_KINDS:
            self.messages.labels(kind)
        self.dead_letters = Counter(
            "streamfit_recorder_dead_letters", "Messages the recorder could not record.", registry=r
        )
        self.batches = Counter("streamfit_recorder_batches", "Batches recorded.", registry=r)
        self.labelled = Gauge(
            "streamfit_recorder_labelled_observations",
            "Labelled observations in the store (after the latest batch).",
            registry=r,
        )
        self.pending_labels = Gauge(
            "streamfit_recorder_pending_labels",
            "Labels whose request has not been seen yet.",
            registry=r,
        )
        self.retrain_commands = Counter(
            "streamfit_recorder_retrain_commands", "Retrain commands published.", registry=r
        )
        self.store_retries = Counter(
            "streamfit_recorder_store_retries",
            "Batches retried because the store could not be reached.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "streamfit_recorder_consumer_lag",
            "Messages on the partition not consumed yet.",
            ["topic", "partition"],
            registry=r,
        )
        self._lagging: set[tuple[str, int]] = set()

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        self._lagging = _set_lags(self.consumer_lag, self._lagging, lags)


class TrainerMetrics(ServiceMetrics):
    service = "trainer"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.rounds = Counter(
            "streamfit_trainer_rounds",
            "Training rounds, by trigger and gate decision (promoted, refused, failed).",
            ["trigger", "decision"],
            registry=r,
        )
        self.refused_in_a_row = Gauge(
            "streamfit_trainer_refused_rounds_in_a_row",
            "Rounds the gate refused since the last promotion.",
            registry=r,
        )
        self.trials = Counter("streamfit_trainer_trials", "Hyper-parameter trials run.", registry=r)
        self.round_seconds = Histogram(
            "streamfit_trainer_round_seconds",
            "Duration of one round, search to gate.",
            buckets=ROUND_SECONDS_BUCKETS,
            registry=r,
        )
        self.retrain_commands = Counter(
            "streamfit_trainer_retrain_commands", "Retrain commands received.", registry=r
        )
        self.drift_alarms = Counter(
            "streamfit_trainer_drift_alarms", "Drift events with drifted=true.", registry=r
        )
        self.champion_version = Gauge(
            "streamfit_trainer_champion_version",
            "Registry version of @champion after the last round.",
            registry=r,
        )
        self.last_cv_loss = Gauge(
            "streamfit_trainer_last_cv_loss",
            "The last round's best cross-validated loss: log loss, or RMSE for regression.",
            registry=r,
        )
        self.last_holdout_loss = Gauge(
            "streamfit_trainer_last_holdout_loss",
            "The last round's challenger loss on the gate holdout: log loss, or RMSE for "
            "regression.",
            registry=r,
        )
        self.last_test_auc = Gauge(
            "streamfit_trainer_last_test_auc",
            "The last round's challenger AUC on the data set's test rows (binary tasks only: "
            "multiclass and regression rounds have no AUC and leave it as it was).",
            registry=r,
        )
        self.last_round = Gauge(
            "streamfit_trainer_last_round_timestamp_seconds",
            "Unix time the last round ended.",
            registry=r,
        )
        self.last_promotion = Gauge(
            "streamfit_trainer_last_promotion_timestamp_seconds",
            "Unix time this trainer last promoted a model.",
            registry=r,
        )


class MonitorMetrics(ServiceMetrics):
    service = "monitor"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.drift_score = Gauge(
            "streamfit_monitor_drift_score",
            "Drift score of the last check (0: none, 1: the windows are fully separable).",
            registry=r,
        )
        self.drifted = Gauge(
            "streamfit_monitor_drifted", "1 if the last check raised a drift alarm.", registry=r
        )
        self.drifted_features = Gauge(
            "streamfit_monitor_drifted_features",
            "Features the last check found drifting.",
            registry=r,
        )
        self.feature_drift_score = Gauge(
            "streamfit_monitor_feature_drift_score",
            "Per-feature drift score of the last check.",
            ["feature"],
            registry=r,
        )
        self.accuracy = Gauge(
            "streamfit_monitor_accuracy",
            "Accuracy: realised (labelled window) or estimated (CBPE, unlabelled requests).",
            ["source"],
            registry=r,
        )
        self.auc = Gauge(
            "streamfit_monitor_auc",
            "ROC AUC: realised (labelled window) or estimated (CBPE, unlabelled requests).",
            ["source"],
            registry=r,
        )
        self.log_loss = Gauge(
            "streamfit_monitor_log_loss",
            "Log loss of the labelled window (realised).",
            ["source"],
            registry=r,
        )
        self.labelled_ratio = Gauge(
            "streamfit_monitor_labelled_ratio",
            "Share of the last check's window whose label has arrived (0..1).",
            registry=r,
        )
        self.observations = Gauge(
            "streamfit_monitor_observations",
            "Observations in the store at the last check.",
            registry=r,
        )
        self.champion_version = Gauge(
            "streamfit_monitor_champion_version",
            "Registry version of the model the checks are about.",
            registry=r,
        )
        self.checks = Counter("streamfit_monitor_checks", "Drift checks run.", registry=r)
        self.check_failures = Counter(
            "streamfit_monitor_check_failures", "Drift checks that raised.", registry=r
        )
        self.check_seconds = Histogram(
            "streamfit_monitor_check_seconds",
            "Duration of one check: drift, realised and estimated performance.",
            buckets=CHECK_SECONDS_BUCKETS,
            registry=r,
        )
        self.last_check = Gauge(
            "streamfit_monitor_last_check_timestamp_seconds",
            "Unix time the last check ended.",
            registry=r,
        )


__all__ = [
    "BatchHistogram",
    "MonitorMetrics",
    "NullPredictorMetrics",
    "PredictorMetrics",
    "RecorderMetrics",
    "ServiceMetrics",
    "TrainerMetrics",
]

"""`streamfit status`: the state of a running deployment, read from its services' ``/metrics``.

Pure core: :func:`scrape` fetches one endpoint, :func:`parse_metrics` reads the Prometheus text
format (prometheus-client's parser), :func:`summarise` turns two successive scrapes of one
target into a plain dict per service found there (rates and the latency p99 come from the
difference between the two). ``streamfit.ops.console`` draws it; ``--once --json`` prints it.

A target is ``host:port`` of a metrics endpoint (``--metrics-port`` of a service). One target
may hold several services: the demo process serves all four on one port.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ..config import METRICS_PORTS, Settings

SERVICES = ("predictor", "recorder", "trainer", "monitor")
# The metric whose presence says a service lives behind a target.
_MARKER = {service: f"streamfit_{service}_ready" for service in SERVICES}


def default_targets(settings: Settings, host: str = "127.0.0.1") -> list[str]:
    """Every service's default metrics port on one host (the demo's first)."""
    ports = [settings.metrics_port(service) for service in METRICS_PORTS]
    return [f"{host}:{port}" for port in sorted(set(ports)) if port > 0]


def parse_targets(text: str) -> list[str]:
    """``host:port,host:port`` (a bare port means 127.0.0.1) -> a list; ValueError if bad.

    >>> parse_targets("9471, predictor-2:9471")
    ['127.0.0.1:9471', 'predictor-2:9471']
    """
    targets = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a target is host:port, got {item!r}")
        targets.append(f"{host or '127.0.0.1'}:{port}")
    if not targets:
        raise ValueError("no target given")
    return targets


class Samples:
    """The samples of one ``/metrics`` text, by name and labels.

    >>> samples = parse_metrics('streamfit_predictor_consumer_lag{topic="r",partition="0"} 3\\n'
    ...                         'streamfit_predictor_consumer_lag{topic="r",partition="1"} 4\\n')
    >>> samples.value("streamfit_predictor_consumer_lag"), samples.value("nothing")
    (7.0, None)
    >>> samples.value("streamfit_predictor_consumer_lag", partition="1")
    4.0
    """

    def __init__(self, series: Mapping[str, list[tuple[dict[str, str], float]]]) -> None:
        self.series = dict(series)

    def __contains__(self, name: str) -> bool:
        return name in self.series

    def labelled(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (found, value)
            for found, value in self.series.get(name, [])
            if all(found.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The sum over the series of ``name`` matching ``labels``; None if there is none."""
        matching = self.labelled(name, **labels)
        return sum(value for _, value in matching) if matching else None

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets ``(upper bound, count)``, summed over its series."""
        totals: dict[float, float] = {}
        for labels, value in self.series.get(f"{name}_bucket", []):
            bound = float(labels["le"])
            totals[bound] = totals.get(bound, 0.0) + value
        return sorted(totals.items())


def parse_metrics(text: str) -> Samples:
    """Prometheus text format -> :class:`Samples` (prometheus-client's own parser)."""
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return Samples(series)


@dataclass
class Scrape:
    """One read of one target: its samples, or why there are none."""

    target: str
    at: float  # time.monotonic() of the read
    samples: Samples | None = None
    error: str | None = None
    unix_time: float = field(default_factory=time.time)


def scrape(target: str, timeout: float = 2.0) -> Scrape:
    """GET ``http://target/metrics``; a target that does not answer is a Scrape with an error."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Scrape(target, started, error=str(reason))
    try:
        return Scrape(target, started, samples=parse_metrics(text))
    except ValueError as exc:  # answers, but not with Prometheus text
        return Scrape(target, started, error=f"not Prometheus metrics: {exc}")


def histogram_quantile(quantile: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The quantile of cumulative histogram buckets, interpolated within a bucket as
    Prometheus' ``histogram_quantile`` does; None without observations.

    >>> histogram_quantile(0.5, [(0.1, 2), (1.0, 4), (math.inf, 4)])
    0.1
    >>> histogram_quantile(0.75, [(0.1, 2), (1.0, 4), (math.inf, 4)])
    0.55
    >>> histogram_quantile(0.99, [(0.1, 0), (1.0, 1), (math.inf, 3)])  # beyond the last bound
    1.0
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = quantile * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # the highest finite bound: nothing is known above it
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _difference(
    now: Sequence[tuple[float, float]], before: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in now]


class _Reader:
    """Values of one target now, and their change since the previous scrape."""

    def __init__(self, now: Samples, before: Samples | None, seconds: float | None) -> None:
        self.now, self.before, self.seconds = now, before, seconds

    def value(self, name: str, **labels: str) -> float | None:
        return self.now.value(name, **labels)

    def integer(self, name: str, **labels: str) -> int | None:
        value = self.now.value(name, **labels)
        return None if value is None else int(value)

    def flag(self, name: str) -> bool | None:
        value = self.now.value(name)
        return None if value is None else value >= 1

    def rate(self, name: str, **labels: str) -> float | None:
        """Per second between the two scrapes (None on the first, or after a restart)."""
        if self.before is None or not self.seconds:
            return None
        now, before = self.now.value(name, **labels), self.before.value(name, **labels)
        if now is None or before is None or now < before:
            return None
        return (now - before) / self.seconds

    def quantile(self, quantile: float, name: str) -> tuple[float | None, str]:
        """The quantile over what was observed between the scrapes, else since the start."""
        buckets = self.now.buckets(name)
        if self.before is not None:
            recent = _difference(buckets, self.before.buckets(name))
            if recent and recent[-1][1] > 0 and all(count >= 0 for _, count in recent):
                return histogram_quantile(quantile, recent), "recent"
        return histogram_quantile(quantile, buckets), "since start"

    def age(self, name: str, unix_time: float) -> float | None:
        """Seconds since the Unix time a gauge holds (None when unset: 0)."""
        value = self.now.value(name)
        return None if not value else max(0.0, unix_time - value)


def summarise(now: Scrape, before: Scrape | None = None) -> dict[str, Any]:
    """One target's state: ``{"target", "up", "error", "services": {name: {...}}}``."""
    if now.samples is None:
        return {"target": now.target, "up": False, "error": now.error, "services": {}}
    earlier = before.samples if before is not None and before.samples is not None else None
    seconds = (now.at - before.at) if earlier is not None and before is not None else None
    read = _Reader(now.samples, earlier, seconds)
    services = {
        service: _SUMMARIES[service](read, now.unix_time)
        for service in SERVICES
        if _MARKER[service] in now.samples
    }
    return {"target": now.target, "up": True, "error": None, "services": services}


def _predictor(read: _Reader, unix_time: float) -> dict[str, Any]:
    p99, window = read.quantile(0.99, "streamfit_prediction_latency_seconds")
    p50, _ = read.quantile(0.5, "streamfit_prediction_latency_seconds")
    return {
        "ready": read.flag("streamfit_predictor_ready"),
        "model_version": read.integer("streamfit_predictor_model_version") or None,
        "compiled": read.flag("streamfit_predictor_model_compiled"),
        "model_age_s": read.age("streamfit_predictor_model_loaded_timestamp_seconds", unix_time),
        "predictions": read.integer("streamfit_predictions_total"),
        "rate_per_s": read.rate("streamfit_predictions_total"),
        "latency_p50_s": p50,
        "latency_p99_s": p99,
        "latency_window": window,
        "lag": read.integer("streamfit_predictor_consumer_lag"),
        "dead_letters": read.integer("streamfit_predictor_dead_letters_total"),
        "swaps": read.integer("streamfit_predictor_model_swaps_total"),
        "models_refused": read.integer("streamfit_predictor_models_refused_total"),
    }


def _recorder(read: _Reader, unix_time: float) -> dict[str, Any]:
    return {
        "ready": read.flag("streamfit_recorder_ready"),
        "requests": read.integer("streamfit_recorder_messages_total", kind="request"),
        "labels": read.integer("streamfit_recorder_messages_total", kind="label"),
        "rate_per_s": read.rate("streamfit_recorder_messages_total"),
        "labelled": read.integer("streamfit_recorder_labelled_observations"),
        "pending_labels": read.integer("streamfit_recorder_pending_labels"),
        "lag": read.integer("streamfit_recorder_consumer_lag"),
        "retrain_commands": read.integer("streamfit_recorder_retrain_commands_total"),
        "dead_letters": read.integer("streamfit_recorder_dead_letters_total"),
    }


def _trainer(read: _Reader, unix_time: float) -> dict[str, Any]:
    rounds = {
        decision: read.integer("streamfit_trainer_rounds_total", decision=decision) or 0
        for decision in ("promoted", "refused", "failed")
    }
    last_round = read.value("streamfit_trainer_last_round_timestamp_seconds") or 0.0
    last_promotion = read.value("streamfit_trainer_last_promotion_timestamp_seconds") or 0.0
    refused = read.integer("streamfit_trainer_refused_rounds_in_a_row") or 0
    # The trainer stamps a promotion with its round's own end time; a refusal counts in a row.
    if not last_round:
        decision = None
    elif last_promotion >= last_round:
        decision = "promoted"
    elif refused:
        decision = "refused"
    else:
        decision = "failed"
    return {
        "ready": read.flag("streamfit_trainer_ready"),
        "rounds": rounds,
        "last_decision": decision,
        "last_round_age_s": read.age("streamfit_trainer_last_round_timestamp_seconds", unix_time),
        "refused_in_a_row": refused,
        "champion_version": read.integer("streamfit_trainer_champion_version") or None,
        "last_cv_loss": read.value("streamfit_trainer_last_cv_loss") or None,
        "last_holdout_loss": read.value("streamfit_trainer_last_holdout_loss") or None,
        "last_test_auc": read.value("streamfit_trainer_last_test_auc") or None,
    }


def _monitor(read: _Reader, unix_time: float) -> dict[str, Any]:
    features = read.now.labelled("streamfit_monitor_feature_drift_score")
    top = sorted(features, key=lambda item: -item[1])[:3]
    checks = read.integer("streamfit_monitor_checks_total") or 0
    measured = checks > 0  # before the first check the gauges hold their 0 defaults

    def source(name: str, which: str) -> float | None:
        value = read.value(name, source=which)
        return value if measured else None

    return {
        "ready": read.flag("streamfit_monitor_ready"),
        "checks": checks,
        "last_check_age_s": read.age("streamfit_monitor_last_check_timestamp_seconds", unix_time),
        "champion_version": read.integer("streamfit_monitor_champion_version") or None,
        "drift_score": read.value("streamfit_monitor_drift_score") if measured else None,
        "drifted": read.flag("streamfit_monitor_drifted") if measured else None,
        "drifting_features": {labels["feature"]: value for labels, value in top},
        "realised_accuracy": source("streamfit_monitor_accuracy", "realised"),
        "estimated_accuracy": source("streamfit_monitor_accuracy", "estimated"),
        "realised_auc": source("streamfit_monitor_auc", "realised"),
        "estimated_auc": source("streamfit_monitor_auc", "estimated"),
        "labelled_ratio": read.value("streamfit_monitor_labelled_ratio") if measured else None,
    }


_SUMMARIES = {
    "predictor": _predictor,
    "recorder": _recorder,
    "trainer": _trainer,
    "monitor": _monitor,
}


def snapshot(
    targets: Iterable[str], previous: Mapping[str, Scrape] | None = None, timeout: float = 2.0
) -> tuple[dict[str, Any], dict[str, Scrape]]:
    """Scrape every target once; its summary against ``previous`` (the last call's scrapes,
    for rates) and the scrapes to pass next time."""
    previous = previous or {}
    scrapes = {target: scrape(target, timeout) for target in targets}
    summaries = [summarise(now, previous.get(target)) for target, now in scrapes.items()]
    return {"time": time.time(), "targets": summaries}, scrapes


__all__ = [
    "Samples",
    "Scrape",
    "default_targets",
    "histogram_quantile",
    "parse_metrics",
    "parse_targets",
    "scrape",
    "snapshot",
    "summarise",
]

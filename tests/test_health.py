"""Metrics, health and readiness: the probe server over HTTP, promtool on every service's
/metrics, thread-safe counting. The services themselves, on the real broker, are in
tests/kafka/test_operations.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from streamfit.bus import Message
from streamfit.ops.health import Health, ProbeServer, serving_probes
from streamfit.ops.metrics import (
    LATENCY_BUCKETS,
    BatchHistogram,
    MonitorMetrics,
    PredictorMetrics,
    RecorderMetrics,
    TrainerMetrics,
)
from streamfit.serving.predictor import PredictorStats
from tests.probes import ProbedService, get, promtool_check


def exercised_services() -> dict[str, ProbedService]:
    """One of each service's metrics, with a value in every family (labels included)."""
    predictor = PredictorMetrics()
    now = time.time()
    predictor.observe_batch([Message("requests", b"{}", timestamp=now - 0.02)] * 5, 4)
    predictor.dead_lettered("invalid")
    predictor.batch_seconds.observe(0.003)
    predictor.model_version.set(3)
    predictor.model_loaded.set(now)
    predictor.swaps.inc()
    predictor.models_refused.labels("integrity").inc()
    predictor.set_lag({("requests", 0): 7, ("requests", 1): 0})
    recorder = RecorderMetrics()
    recorder.messages.labels("label").inc(5)
    recorder.set_lag({("labels", 0): 2})
    trainer = TrainerMetrics()
    trainer.rounds.labels("retrain", "refused").inc()
    trainer.round_seconds.observe(12.5)
    trainer.last_cv_loss.set(0.29)
    monitor = MonitorMetrics()
    monitor.feature_drift_score.labels("age").set(0.4)
    monitor.accuracy.labels("realised").set(0.85)
    monitor.accuracy.labels("estimated").set(0.84)
    monitor.check_seconds.observe(1.2)
    return {
        "predictor": ProbedService(predictor),
        "recorder": ProbedService(recorder),
        "trainer": ProbedService(trainer),
        "monitor": ProbedService(monitor),
    }


@pytest.mark.parametrize("name", ["predictor", "recorder", "trainer", "monitor"])
def test_each_service_metrics_over_http_pass_promtool(name: str) -> None:
    service = exercised_services()[name]
    with ProbeServer({name: service}, port=0, host="127.0.0.1") as server:
        status, body = get(f"http://127.0.0.1:{server.port}/metrics")
    assert status == 200
    text = body.decode()
    assert f"streamfit_{name}_ready 0.0" in text
    assert "process_cpu_seconds_total" in text  # this process's own, from the server's registry
    promtool_check(body)


def test_every_service_on_one_endpoint_as_the_demo_serves_them() -> None:
    services = exercised_services()
    with ProbeServer(services, port=0, host="127.0.0.1") as server:
        status, body = get(f"http://127.0.0.1:{server.port}/metrics")
    assert status == 200
    text = body.decode()
    for name in services:
        assert f"# TYPE streamfit_{name}_ready gauge" in text
    assert 'streamfit_predictor_consumer_lag{partition="0",topic="requests"} 7.0' in text
    assert 'streamfit_monitor_accuracy{source="estimated"} 0.84' in text
    assert "streamfit_predictions_total 4.0" in text
    promtool_check(body)


def test_healthz_and_readyz_follow_the_loop_over_http() -> None:
    service = ProbedService(PredictorMetrics())
    health = service.health
    with ProbeServer({"predictor": service}, port=0, host="127.0.0.1") as server:
        base = f"http://127.0.0.1:{server.port}"
        assert get(base + "/healthz")[0] == 503  # the loop has not started
        assert get(base + "/readyz") == (503, b'{"predictor": "starting"}\n')
        health.starting()
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/readyz") == (503, b'{"predictor": "not ready"}\n')
        health.set_ready(True)
        assert get(base + "/readyz") == (200, b'{"predictor": "ready"}\n')
        assert b"streamfit_predictor_ready 1.0" in get(base + "/metrics")[1]
        health.stopping()  # SIGTERM: not ready first, while the loop finishes its batch
        assert get(base + "/readyz") == (503, b'{"predictor": "stopping"}\n')
        assert get(base + "/healthz")[0] == 200
        assert b"streamfit_predictor_ready 0.0" in get(base + "/metrics")[1]
        health.finished()
        assert get(base + "/healthz") == (503, b'{"predictor": "finished"}\n')
        assert get(base + "/nope")[0] == 404


def test_a_loop_that_stops_turning_is_not_alive() -> None:
    health = Health(stall_s=0.2)
    health.starting()
    health.set_ready(True)
    assert health.alive and health.ready
    time.sleep(0.3)
    assert not health.alive and not health.ready and health.state == "stalled"
    health.beat()
    assert health.alive and health.ready


def test_a_taken_port_leaves_the_service_running_without_probes(caplog) -> None:
    service = ProbedService(RecorderMetrics())
    taken = ProbeServer({"recorder": service}, port=0, host="127.0.0.1").start()
    try:
        with serving_probes({"recorder": service}, taken.port, "127.0.0.1") as server:
            assert server is None
    finally:
        taken.stop()
    assert "give it a free port with --metrics-port" in caplog.text
    with serving_probes({"recorder": service}, 0) as server:  # 0: off
        assert server is None


def test_batch_histogram_matches_prometheus_own_histogram() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.exponential(0.05, 5000), list(LATENCY_BUCKETS), [100.0]])
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("x_seconds", "x", LATENCY_BUCKETS, ours)
    single = Histogram("x_seconds", "x", buckets=LATENCY_BUCKETS, registry=theirs)
    for chunk in np.array_split(values, 37):
        batch.observe_many(chunk)
    for value in values:
        single.observe(float(value))
    for bound in [*LATENCY_BUCKETS, float("inf")]:
        le = "+Inf" if bound == float("inf") else repr(float(bound))
        assert ours.get_sample_value("x_seconds_bucket", {"le": le}) == theirs.get_sample_value(
            "x_seconds_bucket", {"le": le}
        )
    assert ours.get_sample_value("x_seconds_count") == len(values)
    assert ours.get_sample_value("x_seconds_sum") == pytest.approx(values.sum())


def test_predictor_counts_stay_exact_under_three_threads() -> None:
    """The loop, the model watcher and the compiler thread all count (the old dataclass lost
    increments); PredictorStats reads the same numbers."""
    metrics = PredictorMetrics()
    stats = PredictorStats(metrics)
    batch = [Message("requests", b"{}")] * 3

    def loop() -> None:
        for _ in range(2000):
            metrics.observe_batch(batch, 3)
            metrics.dead_lettered("unpredictable")

    def watcher() -> None:
        for _ in range(2000):
            metrics.swaps.inc()
            metrics.models_refused.labels("invalid").inc()

    def compiler() -> None:
        for _ in range(2000):
            metrics.compiled_models.inc()
            metrics.compile_refusals.inc()

    threads = [threading.Thread(target=f) for f in (loop, loop, watcher, compiler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.predictions == stats.requests == 4000 * 3
    assert stats.batches == stats.dead_letters == 4000
    assert stats.swaps == stats.refused_models == 2000
    assert stats.compiled_models == stats.compile_refusals == 2000
    assert stats.integrity_refusals == 0
    assert stats.as_dict()["predictions"] == 12000

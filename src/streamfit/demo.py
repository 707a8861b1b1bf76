"""`streamfit demo`: initial model, predictor, recorder, trainer, monitor and sample app
together, on any bus (one thread each; by default the in-process bus and SQLite)."""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .app import run_app
from .bus import bus_for
from .config import Settings
from .models.registry import ModelRegistry
from .ops.health import serving_probes
from .ops.progress import Progress, as_progress
from .recording import Recorder
from .serving import Predictor
from .training.service import TrainerService

log = logging.getLogger("streamfit.demo")


def ensure_initial_model(
    settings: Settings, progress: Progress | Callable[[str], None] | None = None
) -> int:
    """Train and promote the first model unless the registry has a champion; return the
    champion's version. The round's gate promotes it through ``promotion.promote``, which
    announces it on ``models``."""
    report = as_progress(progress)
    champion = ModelRegistry.from_settings(settings).champion()
    if champion is not None:
        report.note(
            f"champion model v{champion.version} found in the registry ({champion.model_uri})"
        )
        return champion.version
    from .training.round import run_round

    report.note(
        f"training the initial model ({settings.init_max_evals} trials, {settings.optimizer})"
    )
    outcome = run_round(
        settings, trigger="initial", max_evals=settings.init_max_evals, progress=report
    )
    shown = ", ".join(
        f"{name.replace('_', ' ')} {value:.4f}"
        for name, value in outcome.metrics.items()
        if name in ("auc", "accuracy", "log_loss", "macro_f1", "rmse", "mae", "r2")
    )
    report.note(f"initial model v{outcome.version}, on the test rows: {shown}")
    return outcome.version


def run_demo(
    settings: Settings,
    *,
    count: int,
    rate: float,
    label_delay: float | None = None,
    progress: Progress | Callable[[str], None] | None = print,
    settle_timeout: float = 900.0,
) -> dict[str, Any]:
    started = time.monotonic()
    report = as_progress(progress)
    ensure_initial_model(settings, report)
    bus = bus_for(settings)
    bus.ensure_topics(_partitions(settings))
    predictor = Predictor(settings, bus)
    recorder = Recorder(settings, bus)
    trainer = TrainerService(settings, bus)
    from .monitoring import build_monitor

    monitor = build_monitor(settings, bus)  # checks every drift_every requests, in its thread
    threads = [
        threading.Thread(target=service.run, name=name, daemon=True)
        for name, service in (
            ("predictor", predictor),
            ("recorder", recorder),
            ("trainer", trainer),
        )
    ]
    probes = contextlib.ExitStack()
    services = {
        "predictor": predictor,
        "recorder": recorder,
        "trainer": trainer,
        "monitor": monitor,
    }
    # One endpoint for the four services of this process (their metric names do not overlap).
    probes.enter_context(
        serving_probes(services, settings.metrics_port("demo"), settings.metrics_host)
    )
    for thread in threads:
        thread.start()
    try:
        for service in (predictor, recorder, trainer):
            if not service.ready.wait(60):
                raise RuntimeError(f"{type(service).__name__} did not start within 60 s")
        monitor.start()
        report.note(
            f"streaming {count} requests at {rate}/s; retrain every "
            f"{settings.retrain_every} labelled, {settings.max_evals} trials per retrain"
        )
        summary = run_app(
            settings, bus, count=count, rate=rate, label_delay=label_delay, progress=report
        ).as_dict()
        deadline = time.monotonic() + settle_timeout
        if settings.promotion != "offline":
            _stream_until_decided(
                settings, bus, summary, trainer, recorder, rate, label_delay, report.note, deadline
            )
        # Let the recorder catch up and the retrains it asked for finish, so the summary counts
        # them.
        while time.monotonic() < deadline and (
            recorder.stats.predictions + recorder.stats.dead_letters < summary["answered"]
            or recorder.stats.retrains_sent < recorder.stats.retrains_queued
            or trainer.commands_seen < recorder.stats.retrains_sent
            or not trainer.idle.is_set()
        ):
            time.sleep(0.2)
        monitor.stop()
        final = monitor.run_once(force=True)  # one last check over the end of the stream
    finally:
        monitor.close()
        predictor.stop()
        recorder.stop()
        trainer.stop()
        for thread in threads:
            thread.join(timeout=30)
        probes.close()
        bus.close()
    metrics = monitor.latest_metrics
    summary["monitor"] = {
        "checks": monitor.step,
        "drifted": bool(final.drifted) if final else None,
        "drift": round(final.drift, 3) if final and math.isfinite(final.drift) else None,
        "drifted_features": final.drifted_features if final else [],
        **{
            name: round(metrics[key], 4)
            for name, key in (
                ("realised_accuracy", "realised.accuracy"),
                ("realised_auc", "realised.auc"),
                ("estimated_accuracy", "estimated.accuracy"),
                ("realised_rmse", "realised.rmse"),
                ("estimated_rmse", "estimated.rmse"),
            )
            if key in metrics
        },
    }
    if final is not None:
        report.note("final drift check:\n" + final.table())
    summary["live_comparisons"] = _comparisons(settings)
    summary.update(
        retrains=trainer.rounds,
        promotions=trainer.promotions,
        retrains_requested=recorder.stats.retrains_sent,
        recorded=recorder.stats.labelled,
        serving_version=predictor.model_version,
        wall_s=round(time.monotonic() - started, 1),
    )
    return summary


def render_summary(summary: dict[str, Any]) -> str:
    """The demo's summary as a short table a person reads at a glance (``--summary-json``
    writes all of it as JSON)."""
    versions = ", ".join(f"v{v}: {n}" for v, n in summary.get("model_versions", {}).items())
    monitor = summary.get("monitor", {})
    accuracy = summary.get("accuracy")
    judged = [
        f"{name} {monitor[key]:.3f}"
        for name, key in (
            ("realised", "realised_accuracy"),
            ("estimated", "estimated_accuracy"),
            ("realised RMSE", "realised_rmse"),
            ("estimated RMSE", "estimated_rmse"),
        )
        if monitor.get(key) is not None
    ]
    latency = ", ".join(f"{k} {v:.1f} ms" for k, v in summary.get("latency_ms", {}).items())
    checks = monitor.get("checks", 0)
    score = "" if monitor.get("drift") is None else f" (score {monitor['drift']:.2f})"
    if monitor.get("drifted"):
        features = ", ".join(monitor.get("drifted_features", [])) or "the whole window"
        drift = f"alarm at the last of {checks} checks: {features}{score}"
    else:
        drift = f"no alarm at the last of {checks} checks{score}"
    rows = [
        ("sent", f"{summary['sent']}"),
        (
            "answered",
            f"{summary['answered']}  (lost {summary['lost']}, duplicates "
            f"{summary['duplicates']}, dead letters {summary.get('dead_letters', 0)})",
        ),
        (
            "retrains",
            f"{summary.get('retrains', 0)} rounds, {summary.get('promotions', 0)} promoted "
            f"({summary.get('retrains_requested', 0)} asked for)",
        ),
        (
            "versions",
            f"{versions or 'none'}  (v{summary.get('serving_version')} serving at the end)",
        ),
        _quality(accuracy, summary.get("mae"), judged),
        ("latency", latency or "n/a"),
        ("drift", drift),
    ]
    for comparison in summary.get("live_comparisons", []):
        rows.append(
            (
                "live test",
                f"v{comparison['challenger']} against v{comparison['champion']} "
                f"({comparison['policy']}): {comparison['decision']} after "
                f"{comparison['pairs']} labelled pairs",
            )
        )
    if "wall_s" in summary:
        rows.append(("took", f"{summary['wall_s']:.0f} s"))
    return "demo summary\n" + "\n".join(f"  {name:<10}{value}" for name, value in rows)


def _quality(accuracy: float | None, mae: float | None, judged: list[str]) -> tuple[str, str]:
    """The summary's row on the answers against the true labels: accuracy, or for a
    regression the mean absolute error."""
    monitor = f"  (monitor: {', '.join(judged)})" if judged else ""
    if accuracy is None and mae is not None:
        return "error", f"{mae:.4g} mean absolute error against the true labels{monitor}"
    shown = "n/a" if accuracy is None else f"{accuracy:.3f} against the true labels"
    return "accuracy", shown + monitor


def mlflow_ui_hint(settings: Settings) -> str:
    """How to see the demo's runs: the link to the experiment's runs (MLflow 3's UI opens on its
    GenAI overview otherwise) and, for a local store, a ``mlflow ui`` command with absolute
    paths, so that it works from any directory."""
    from mlflow import MlflowClient

    uri = settings.mlflow_uri
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(settings.experiment)
    runs = f"#/experiments/{experiment.experiment_id}/runs" if experiment is not None else ""
    if uri.startswith(("http://", "https://")):
        return f"the runs in the MLflow UI: {uri.rstrip('/')}/{runs}"
    mlflow = Path(sys.executable).with_name("mlflow")
    command = shlex.quote(str(mlflow)) if mlflow.is_file() else "mlflow"
    return (
        f"open the runs in the MLflow UI:\n"
        f"  {command} ui --backend-store-uri {shlex.quote(uri)}\n"
        f"then browse http://127.0.0.1:5000/{runs}"
    )


def _stream_until_decided(
    settings: Settings,
    bus: Any,
    summary: dict[str, Any],
    trainer: TrainerService,
    recorder: Recorder,
    rate: float,
    label_delay: float | None,
    progress: Callable[[str], None],
    deadline: float,
) -> None:
    """Shadow or canary mode: while a live decision is still to come (a challenger being
    compared, or a round under way or asked for that may start one) and none was taken yet, the
    app keeps sending, 100 requests at a time, so the comparison gets its labelled pairs within
    the stream, however slow the rounds on a loaded machine (the stream's own count may end
    before the first round does). Their figures are added to ``summary``."""
    from .stores import ComparisonStore

    comparisons = ComparisonStore(settings.store_url)
    try:

        def pending() -> bool:
            if trainer.judge.decisions:
                return False  # one live decision within the stream: the demo has shown it
            running = comparisons.running(settings.registered_model) is not None
            return (
                running
                or not trainer.idle.is_set()
                or recorder.stats.retrains_sent < recorder.stats.retrains_queued
                or trainer.commands_seen < recorder.stats.retrains_sent
            )

        announced = False
        while pending() and time.monotonic() < deadline:
            if not announced:
                progress("no live decision yet: the stream goes on until one is taken")
                announced = True
            more = run_app(
                settings, bus, count=100, rate=rate, label_delay=label_delay, progress=None
            ).as_dict()
            for key in ("sent", "answered", "lost", "duplicates", "dead_letters", "wall_s"):
                summary[key] = round(summary[key] + more[key], 2)
            versions = summary["model_versions"]
            for version, n in more["model_versions"].items():
                versions[version] = versions.get(version, 0) + n
            progress(
                f"sent {summary['sent']} in all  answered {summary['answered']}  "
                f"models {dict(sorted(versions.items()))}"
            )
    finally:
        comparisons.close()


def _comparisons(settings: Settings) -> list[dict[str, Any]]:
    """The live comparisons of challengers (``--promotion shadow``), as ``experiments`` lists
    them."""
    from .stores import ComparisonStore

    store = ComparisonStore(settings.store_url)
    try:
        return [
            {
                k: c.as_dict()[k]
                for k in ("challenger", "champion", "policy", "decision", "pairs", "duration_s")
            }
            for c in store.list(settings.registered_model)
        ]
    finally:
        store.close()


def _partitions(settings: Settings) -> dict[str, int]:
    topics = settings.topics
    partitions = {name: 1 for name in vars(topics).values()}
    partitions[topics.requests] = settings.request_partitions
    partitions[topics.predictions] = settings.request_partitions
    return partitions

"""Sample app: publishes the data set's test rows (the user's table, or Adult's) as requests,
with their labels riding along or sent late, and reads the predictions back."""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import messages
from .bus import Bus, BusError
from .config import Settings
from .contract import TaskRules, task_of
from .datasets import load_dataset, table_requests
from .ops.progress import Progress, as_progress

log = logging.getLogger("streamfit.app")


@dataclass
class AppSummary:
    sent: int = 0
    answered: int = 0
    lost: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    model_versions: dict[int, int] = field(default_factory=dict)
    accuracy: float | None = None  # classification: the share of answers naming the true class
    mae: float | None = None  # regression: the mean absolute error of the answers
    latency_ms: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        versions = ", ".join(f"v{v}: {n}" for v, n in sorted(self.model_versions.items()))
        latency = " ".join(f"{k} {v:.1f} ms" for k, v in self.latency_ms.items())
        accuracy = "n/a" if self.accuracy is None else f"{self.accuracy:.3f}"
        if self.mae is not None:
            accuracy = f"n/a, mean absolute error {self.mae:.4g}"
        return (
            f"sent {self.sent}, answered {self.answered}, lost {self.lost}, "
            f"duplicates {self.duplicates}, dead letters {self.dead_letters}\n"
            f"model versions seen: {versions or 'none'}\n"
            f"accuracy vs true labels: {accuracy}; latency {latency or 'n/a'}; "
            f"wall {self.wall_s:.1f} s"
        )


def run_app(
    settings: Settings,
    bus: Bus,
    *,
    count: int,
    rate: float,
    label_delay: float | None = None,
    timeout: float = 120.0,
    progress: Progress | Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> AppSummary:
    """Send ``count`` requests at ``rate``/s and wait for their predictions.

    With ``label_delay`` None the true label rides in the request (demo mode); otherwise it is
    sent separately on the labels topic ``label_delay`` seconds after the request.
    ``progress`` counts ``sent`` and ``answered`` continuously and gets a line every 2 s.
    """
    if count < 1 or rate <= 0:
        raise ValueError("count must be >= 1 and rate > 0")
    topics = settings.topics
    stop = stop or threading.Event()
    report = as_progress(progress)
    dataset = load_dataset(settings)
    rules = task_of(dataset.contract)
    rows = table_requests(dataset, count, seed=settings.seed)
    sent_at: dict[str, float] = {}
    truth: dict[str, float | None] = {}
    summary = AppSummary()
    started = time.monotonic()
    with bus.consumer([topics.predictions, topics.dead_letter], group=None) as consumer:
        failures: list[BusError] = []  # the sender's, raised here: e.g. a refused write

        def send() -> None:
            try:
                _send_all(
                    bus, settings, rules, rows, rate, label_delay, sent_at, truth, summary, stop
                )
            except BusError as exc:
                failures.append(exc)

        sender = threading.Thread(target=send, name="app-sender", daemon=True)
        sender.start()
        answers: dict[str, dict[str, Any]] = {}
        versions: Counter[int] = Counter()
        latencies: list[float] = []
        dead: set[str] = set()
        last_report = time.monotonic()
        deadline = math.inf
        while not stop.is_set():
            for message in consumer.poll(1000, timeout=0.2):
                try:
                    record = messages.decode(message.value)
                    request_id = record.get("request_id")
                except (ValueError, AttributeError):  # not JSON, or not an object
                    continue  # not an answer to us: anyone may write to these topics
                if not isinstance(request_id, str) or request_id not in sent_at:
                    continue  # another app's traffic
                if message.topic == topics.dead_letter:
                    dead.add(request_id)
                elif request_id in answers:
                    summary.duplicates += 1
                else:
                    answers[request_id] = record
                    versions[record["model_version"]] += 1
                    latencies.append((time.monotonic() - sent_at[request_id]) * 1000)
            now = time.monotonic()
            report.update("sent", summary.sent, count)
            line = ""
            if now - last_report >= 2:
                last_report = now
                line = (
                    f"sent {summary.sent}/{count}  answered {len(answers)}  "
                    f"models {dict(sorted(versions.items()))}"
                )
            report.update("answered", len(answers), count, line)
            if not sender.is_alive():
                if failures:
                    raise failures[0]
                if len(answers) + len(dead) >= summary.sent:
                    break
                deadline = min(deadline, now + timeout)
                if now > deadline:
                    break
        sender.join(timeout=1)
    summary.answered = len(answers)
    summary.dead_letters = len(dead)
    summary.lost = summary.sent - summary.answered - summary.dead_letters
    summary.model_versions = dict(sorted(versions.items()))
    _grade(summary, rules, answers, truth)
    if latencies:
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        summary.latency_ms = {"p50": round(p50, 2), "p95": round(p95, 2), "p99": round(p99, 2)}
    summary.wall_s = round(time.monotonic() - started, 2)
    return summary


def _grade(
    summary: AppSummary,
    rules: TaskRules,
    answers: dict[str, dict[str, Any]],
    truth: dict[str, float | None],
) -> None:
    """Accuracy (classification) or mean absolute error (regression) of the answers."""
    graded = [(answers[r], truth[r]) for r in answers if truth.get(r) is not None]
    if not graded:
        return
    if rules.name == "regression":
        errors = [abs(answer["value"] - target) for answer, target in graded]
        summary.mae = round(float(np.mean(errors)), 4)
        return
    hits = [rules.encode_label(answer["label"]) == target for answer, target in graded]
    if rules.name == "binary":  # a binary answer's label is 1 or 0
        hits = [answer["label"] == target for answer, target in graded]
    summary.accuracy = round(sum(hits) / len(graded), 4)


def _send_all(
    bus: Bus,
    settings: Settings,
    rules: TaskRules,
    rows: list[dict[str, Any]],
    rate: float,
    label_delay: float | None,
    sent_at: dict[str, float],
    truth: dict[str, float | None],
    summary: AppSummary,
    stop: threading.Event,
) -> None:
    topics = settings.topics
    late: list[tuple[float, str, Any]] = []  # (due, request_id, label as the table has it)
    label_column = rules.contract.label
    with bus.producer() as producer:
        start = time.monotonic()
        for i, row in enumerate(rows):
            if stop.is_set():
                break
            due = start + i / rate
            while (now := time.monotonic()) < due:
                time.sleep(min(due - now, 0.01))
                _send_due_labels(producer, topics.labels, late)
            request_id = uuid.uuid4().hex
            label = row[label_column]
            truth[request_id] = rules.encode_label(label)
            data = (
                row if label_delay is None else {k: v for k, v in row.items() if k != label_column}
            )
            sent_at[request_id] = time.monotonic()
            producer.produce(
                topics.requests, messages.request(request_id, data), request_id.encode()
            )
            summary.sent += 1
            if label_delay is not None and label is not None:
                heapq.heappush(late, (time.monotonic() + label_delay, request_id, label))
            _send_due_labels(producer, topics.labels, late)
        producer.flush()
        while late and not stop.is_set():
            time.sleep(0.05)
            _send_due_labels(producer, topics.labels, late)


def _send_due_labels(producer: Any, topic: str, late: list[tuple[float, str, Any]]) -> None:
    now = time.monotonic()
    while late and late[0][0] <= now:
        _, request_id, label = heapq.heappop(late)
        producer.produce(topic, messages.label(request_id, label), request_id.encode())

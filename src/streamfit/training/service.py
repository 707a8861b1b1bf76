"""The trainer service: retrain commands in, new champion announcements out.

Commands that pile up while a round runs are coalesced into one round: the newest labelled data
already includes what the older commands asked for.

With ``retrain_on_drift`` the trainer also listens to the ``drift`` topic: an event with
``"drifted": true`` starts a round (trigger ``drift``). The drift event itself is the contract, so
any detector can publish it. While drift lasts the monitor repeats its alarm every check, so a
drift alarm is answered at most once per champion version: after a promotion a persisting drift
may start one more round; after a refusal, nothing until the champion changes.

A promoted model is announced by the round itself (``promotion.promote``, through this service's
producer). The retrain command's offset is committed only once its round has finished: trainers
in one consumer group on the one-partition ``retrain`` topic are one working and the others on
standby, and when the working one dies mid-round the next owner of the partition reads the same
command again and runs the round. The dead round's version was at most registered (alias
``challenger``), never promoted nor announced. A round that fails (the tracking server or the
store unreachable) is not committed either: the trainer retries it with a backoff (5 s, doubling,
at most 2 min) until it succeeds, and commands arriving meanwhile join the retried round.

With a shared search (``--optimizer optuna`` and a PostgreSQL ``--trials``), the round's
leader announces its study on the ``search`` topic and the other trainers, standbys included,
run its trials until the budget is spent (``streamfit.training.study``); only the leader refits,
gates and promotes.

A thread of the trainer judges the running live comparison, if any
(``streamfit.challengers.live``), rounds or not: every ``live_check_seconds`` it re-reads the
labelled pairs and promotes, rejects or keeps, announcing through a producer of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from .. import messages
from ..bus import Bus, Message
from ..challengers.live import LiveJudge
from ..config import Settings
from ..models.registry import ModelRegistry
from ..ops.health import Health, ServiceLoop
from ..ops.heap import release_freed_memory
from ..ops.instance import InstanceSlot
from ..ops.metrics import TrainerMetrics
from ..ops.progress import LineProgress, Progress
from ..stores import ObservationStore, when_up
from .study import WORKER, Announcement, is_shared

log = logging.getLogger("streamfit.trainer")

# Backoff of a failed round's retry (the tracking server down, the store unreachable...).
_FIRST_RETRY_S = 5.0
_MAX_RETRY_S = 120.0
# A round beats the trainer's health with every progress line (each trial); a trainer silent
# for longer than this is stuck.
_STALL_S = 900.0
# A round polls nothing while it trains (minutes on a large window, more on a busy machine):
# Kafka's default of 5 minutes would evict the trainer mid-round, refuse its commit and run the
# round's commands again. A trainer that dies is still replaced: at once by a restart under its
# member id, else by a standby within the session timeout.
_ROUND_BOUND_S = 6 * 3600.0


class TrainerService(ServiceLoop):
    service = "trainer"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        *,
        metrics: TrainerMetrics | None = None,
        progress: Progress | None = None,
    ) -> None:
        """``progress`` hears each round's trials (default: log lines)."""
        super().__init__()
        self.settings = settings
        self.metrics = metrics if metrics is not None else TrainerMetrics()
        # Ready once it waits for commands: a standby trainer (no partition of the one-partition
        # retrain topic) is a healthy member that takes over when the active one leaves.
        self.health = Health(self.metrics, stall_s=_STALL_S)
        self.bus = bus
        self.progress = progress if progress is not None else LineProgress(log.info)
        # Started with or before its database (a host booting): waits for it, as the recorder.
        self.observations = when_up(settings.store_url, ObservationStore)
        self.registry = ModelRegistry.from_settings(settings)
        self.running = False
        self.ready = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.rounds = 0
        self.promotions = 0
        self.failures = 0
        self._failed_in_a_row = 0
        self.commands_seen = 0  # retrain commands
        self.drift_alarms = 0  # drift events with drifted=true
        self._drift_answered: int | None = -1  # champion version a drift round was started for
        self.judge = LiveJudge(settings, self.observations, registry=self.registry)

    def _run(self) -> None:
        from .round import run_round  # heavy imports (MLflow, optimisers) only when training

        topics = self.settings.topics
        group = self.settings.trainer_group
        with contextlib.ExitStack() as stack:
            subscribed = [topics.retrain]
            if self.settings.retrain_on_drift:
                subscribed.append(topics.drift)
            # A replacement joins under the same id and takes the retrain partition at once.
            slot = stack.enter_context(
                InstanceSlot(self.settings.data_dir, group, self.settings.instance_id)
            )
            self.stable_id = slot.stable_id
            consumer = stack.enter_context(
                self.bus.consumer(
                    subscribed,
                    group=group,
                    max_poll_interval_s=_ROUND_BOUND_S,
                    instance_id=slot.stable_id,
                )
            )
            producer = self.bus.producer()
            stack.callback(producer.close)
            # Shared search: the other trainers' rounds, announced on the search topic, are
            # joined while this trainer has no round of its own (a standby does most of them).
            search = None
            if is_shared(self.settings):
                search = stack.enter_context(
                    self.bus.consumer([topics.search], group=None, replay=1)
                )
            judge = threading.Thread(target=self._judge_loop, name="live-judge", daemon=True)
            judge.start()
            stack.callback(judge.join, 10)
            log.info(
                "trainer waiting for retrain commands on %s as group member %r",
                subscribed,
                slot.stable_id,
            )
            self.ready.set()
            champion = self._champion()
            if champion is not None:
                self.metrics.champion_version.set(champion)
            self.health.set_ready(True)
            pending: str | None = None  # a round that failed: retried, its command kept
            retry_at = 0.0
            delay = _FIRST_RETRY_S
            while self.running:
                self.health.beat()
                commands = consumer.poll(1000, timeout=0.5)
                trigger = self._trigger(commands) if commands else None
                if trigger is None and commands and pending is None:
                    consumer.commit()  # calm drift events, or an alarm already answered
                    continue
                if trigger is not None and pending != "retrain":
                    pending = trigger
                if pending is None and search is not None:
                    for message in search.poll(10, timeout=0):
                        self._join(message.value)
                if pending is None or time.monotonic() < retry_at:
                    continue
                self.idle.clear()
                if self._round(pending, len(commands), producer, run_round):
                    pending, delay = None, _FIRST_RETRY_S
                    consumer.commit()  # only now: a trainer killed mid-round leaves it to another
                    self.idle.set()
                else:
                    # Not committed: the command is not lost. This trainer retries it after a
                    # backoff (commands arriving meanwhile join the retried round); were it to
                    # die, the next owner of the partition reads it again.
                    log.warning("round retried in %.0f s (the retrain command is kept)", delay)
                    retry_at = time.monotonic() + delay
                    delay = min(delay * 2, _MAX_RETRY_S)

    def _join(self, value: bytes) -> None:
        """Run trials of another trainer's round until its budget is spent (study.py)."""
        from .round import join_search

        try:
            announcement = Announcement.decode(value)
        except ValueError as exc:
            log.error("ignoring malformed search announcement %r (%s)", value[:200], exc)
            return
        if announcement.leader == WORKER:
            return  # this trainer's own round
        self.idle.clear()
        try:
            join_search(  # the leader's round counts the trials
                self.settings,
                announcement,
                new_observations=self._rows_of(announcement),
                progress=_Heartbeat(self.progress, self.health),
                running=lambda: self.running,
            )
        except Exception as exc:  # the leader's round goes on without this trainer's trials
            log.warning(
                "could not join round %d's search (%s: %s)",
                announcement.round_id,
                type(exc).__name__,
                str(exc).splitlines()[0][:300] if str(exc) else "",
            )
        finally:
            release_freed_memory()
            self.idle.set()

    def _rows_of(self, announcement: Announcement) -> Any:
        """The labelled observations the leader trained on: those labelled up to its newest
        (labels keep coming after its read), at most ``train_window`` of them. Read with room
        for the newer ones; were there more, the data hashes differ and the join is refused."""
        window = self.settings.train_window
        rows = self.observations.labelled_frame(limit=window + max(1000, window // 10))
        if announcement.labelled_upto is None or "labelled_at" not in rows:
            return rows.iloc[0:0]
        rows = rows[rows["labelled_at"] <= announcement.labelled_upto]
        return rows.tail(window).reset_index(drop=True)

    def _judge_loop(self) -> None:
        """Thread: judge the live comparison every ``live_check_seconds`` while running."""
        with self.bus.producer() as producer:
            while self.running:
                try:
                    self.judge.check(producer=producer)
                except Exception as exc:  # the store or the registry down: the next look retries
                    log.warning("live comparison not judged (%s: %s)", type(exc).__name__, exc)
                deadline = time.monotonic() + self.settings.live_check_seconds
                while self.running and time.monotonic() < deadline:
                    time.sleep(min(0.2, self.settings.live_check_seconds))

    def _round(self, trigger: str, messages_count: int, producer: Any, run_round: Any) -> bool:
        """Run one round; False if it failed (logged: the champion keeps serving). Either way
        the heap it used goes back to the system (glibc would keep it: see streamfit/heap.py)."""
        try:
            return self._run_round(trigger, messages_count, producer, run_round)
        finally:
            release_freed_memory()

    def _run_round(self, trigger: str, messages_count: int, producer: Any, run_round: Any) -> bool:
        progress = _Heartbeat(self.progress, self.health)
        try:
            new_rows = self.observations.labelled_frame(limit=self.settings.train_window)
            log.info(
                "retraining (%s) on %d new labelled observations (%d message(s))",
                trigger,
                len(new_rows),
                messages_count,
            )
            recent = None
            if self.settings.drop_drifting_features > 0:
                recent = self.observations.recent_frame(self.settings.drift_window)
            outcome = run_round(
                self.settings,
                trigger=trigger,
                max_evals=self.settings.max_evals,
                new_observations=new_rows,
                progress=progress,
                recent=recent,
                producer=producer,
            )
        except Exception as exc:
            # A failed round must not take the trainer down; the champion keeps serving.
            self.failures += 1
            self.metrics.rounds.labels(trigger, "failed").inc()
            self.metrics.last_round.set(time.time())
            log.error(
                "retraining failed (%s: %s); the current champion keeps serving",
                type(exc).__name__,
                str(exc).splitlines()[0][:300] if str(exc) else "",
                exc_info=self._failed_in_a_row == 0,  # the traceback once, not every retry
            )
            self._failed_in_a_row += 1
            return False
        self._failed_in_a_row = 0
        self.rounds += 1
        log.info(
            "round done: v%s %s (%s)",
            outcome.version,
            "promoted"
            if outcome.promoted
            else "shadowed"
            if outcome.reason.startswith("shadowed")
            else "not promoted",
            outcome.reason,
        )
        self.promotions += outcome.promoted  # announced by the round's promotion
        self._count_round(trigger, outcome)
        return True

    def _count_round(self, trigger: str, outcome: Any) -> None:
        metrics = self.metrics
        decision = "promoted" if outcome.promoted else "refused"
        metrics.rounds.labels(trigger, decision).inc()
        metrics.trials.inc(outcome.n_trials)
        metrics.round_seconds.observe(outcome.duration_s)
        now = time.time()
        metrics.last_round.set(now)
        if outcome.promoted:
            metrics.refused_in_a_row.set(0)
            metrics.last_promotion.set(now)
        else:
            metrics.refused_in_a_row.inc()
        if outcome.champion_version is not None:
            metrics.champion_version.set(outcome.champion_version)
        for gauge, key in (
            (metrics.last_cv_loss, "cv_loss"),
            (metrics.last_holdout_loss, "holdout_loss"),
            (metrics.last_test_auc, "auc"),
        ):
            if key in outcome.metrics:
                gauge.set(outcome.metrics[key])

    def _trigger(self, commands: list[Message]) -> str | None:
        """Which round the messages ask for: ``retrain`` if any retrain command came, ``drift``
        for a drift alarm not yet answered for the current champion, else None."""
        drift_topic = self.settings.topics.drift
        retrains = sum(1 for m in commands if m.topic != drift_topic)
        self.commands_seen += retrains
        self.metrics.retrain_commands.inc(retrains)
        alarms = 0
        for message in commands:
            if message.topic == drift_topic:
                try:
                    alarms += messages.decode(message.value).get("drifted") is True
                except (ValueError, AttributeError):
                    log.error("ignoring malformed drift event %r", message.value[:200])
        self.drift_alarms += alarms
        self.metrics.drift_alarms.inc(alarms)
        if retrains:
            return "retrain"
        if not alarms:
            return None
        champion = self._champion()
        if champion == self._drift_answered:
            log.info("drift alarm: a drift round already ran for champion v%s", champion)
            return None
        self._drift_answered = champion
        return "drift"

    def _champion(self) -> int | None:
        """The registry's champion: trainers share no disk, and another trainer (or an operator)
        may have promoted one that this trainer's own bundle store has never seen."""
        try:
            entry = self.registry.champion()
        except Exception as exc:  # the round would tell the same; the loop must go on
            log.warning("registry unreachable: %s", exc)
            return None
        return entry.version if entry else None


class _Heartbeat(Progress):
    """The trainer's progress, each report also a heartbeat: a long round is work, not a stuck
    loop."""

    def __init__(self, inner: Progress, health: Health) -> None:
        self.inner = inner
        self.health = health

    def note(self, text: str) -> None:
        self.health.beat()
        self.inner.note(text)

    def update(self, task: str, done: int, total: int | None = None, status: str = "") -> None:
        self.health.beat()
        self.inner.update(task, done, total, status)

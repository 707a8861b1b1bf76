"""``streamfit recorder``: requests, predictions and labels in; the observation store kept.

The only writer of the observation store (see :mod:`streamfit.stores.observations`). Per polled
batch (up to ``max_batch`` x ``batches_per_commit`` messages under a backlog):

1. decode every message; one it cannot read is dead-lettered with the reason, never fatal;
2. upsert all of it in **one** database transaction, which also advances the retrain counter
   and queues each new threshold's retrain command in the outbox;
3. commit the database, then deliver the dead letters and the outbox (produce, flush, mark the
   outbox rows sent), then commit the consumed offsets.

A recorder killed at any moment loses nothing (offsets are committed last, so the batch comes
again) and counts nothing twice (upserts are idempotent and the retrain mark lives in the same
transaction). A restarted recorder first delivers what its predecessor left in the outbox; an
outbox message whose delivery was acknowledged by Kafka but not yet marked sent when the process
died is delivered again (at-least-once, the outbox's guarantee; the trainer coalesces commands).

If a batch's transaction fails for an unexpected reason, the batch is recorded again message by
message and only the offender is dead-lettered, with the database's reason
(:mod:`streamfit.ops.batches`). When the database cannot be reached (a server restarting cuts
the connection at any statement, the commit included) the batch waits (backoff) instead, in step
2 or in step 3, its offsets uncommitted: nothing is dead-lettered for that, the loop carries on
once the database answers, and a transaction cut before its commit committed nothing.
A recorder started while its PostgreSQL server is down waits for it the same way; a server
that refuses it (a wrong password or database) ends it with the server's reason.

Several recorders in one consumer group (``recorder_group``) split the partitions; the store
makes their concurrent upserts and the retrain counter correct.

With ``retain`` set, a thread of the recorder removes what the store no longer keeps, at start
and then every few seconds to a minute (:meth:`ObservationStore.retain`: partitions dropped, or
small deletes), beside the loop and never in its way; a failed pass is retried at the next.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from .. import messages
from ..bus import Bus, Message, Producer
from ..config import Settings
from ..datasets import serving_contract
from ..features import request_schema
from ..ops.batches import handle_isolating
from ..ops.health import Health, ServiceLoop
from ..ops.instance import InstanceSlot
from ..ops.metrics import RecorderMetrics
from ..stores import (
    ObservationBatch,
    ObservationStore,
    StoreError,
    StoreUnavailable,
    worth_waiting_for,
)
from ..stores._retention import partition_seconds
from ._decode import Refused, decode_batch

log = logging.getLogger("streamfit.recorder")
T = TypeVar("T")

_MAX_BACKOFF_S = 30.0
# How often a recorder looks for outbox messages another recorder queued but never delivered
# (killed in between) when it queued nothing itself.
_OUTBOX_SWEEP_S = 10.0
# How far back a starting recorder looks on the retrain topic for commands already published:
# far more than one delivery's worth (the thresholds one batch can cross).
_PUBLISHED_LOOKBACK = 1000
# Longest time between two retention passes: what a pass leaves behind is what the recorder
# wrote in that time.
_RETAIN_EVERY_S = 60.0


@dataclass
class RecorderStats:
    """The loop's own counts (only its thread writes them; the same numbers go to the
    thread-safe :class:`~streamfit.ops.metrics.RecorderMetrics` that ``/metrics`` serves);
    ``labelled`` is the store's count after the latest batch."""

    batches: int = 0
    requests: int = 0
    predictions: int = 0
    labels: int = 0
    dead_letters: int = 0
    retrains_queued: int = 0
    retrains_sent: int = 0
    labelled: int = 0
    pending_labels: int = 0  # labels whose request was not seen yet (at the latest sweep)
    store_retries: int = 0
    retained_rows: int = 0  # rows deleted by retention (rows of dropped partitions not counted)
    dropped_partitions: int = 0
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "uptime_s": round(time.time() - self.started, 1)}


class Recorder(ServiceLoop):
    """The recorder loop; ``store`` defaults to ``settings.store_url``."""

    service = "recorder"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        store: ObservationStore | None = None,
        *,
        metrics: RecorderMetrics | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.metrics = metrics if metrics is not None else RecorderMetrics()
        self.health = Health(self.metrics)
        self.bus = bus
        self.topics = settings.topics
        self.retention = settings.retention
        self._store = store  # else opened by run(), once the database answers
        self.stats = RecorderStats()
        # What requests and labels look like: the contract of the deployment's data.
        self.schema = request_schema(serving_contract(settings), settings.extra_columns)
        self.running = False
        self.ready = threading.Event()  # set once the loop consumes
        self._queued = False  # the batch being handled queued a retrain command
        self._retaining = threading.Event()  # set: the retention thread ends

    @property
    def store(self) -> ObservationStore:
        """The observation store: the one given, else ``settings.store_url`` once running."""
        if self._store is None:
            raise RuntimeError("the recorder opens its observation store when it runs")
        return self._store

    def _open_store(self) -> ObservationStore:
        """``settings.store_url``'s store. One whose server does not answer yet raises
        :class:`StoreUnavailable` (:meth:`_run` waits for it: a recorder started before its
        database, as a host boots, records once it is up); one that refused the recorder (a
        wrong password or database, an SQLite file it cannot open) ends it with the reason."""
        url = self.settings.store_url
        try:
            return ObservationStore(url, partition_seconds=partition_seconds(self.retention))
        except StoreUnavailable as exc:
            if worth_waiting_for(url, exc):
                raise
            raise StoreError(str(exc)) from exc

    def stop(self) -> None:
        super().stop()
        self._retaining.set()

    def retain_once(self) -> None:
        """One retention pass; a database error is logged, and the next pass tries again."""
        try:
            retained = self.store.retain(self.retention)
        except StoreError as exc:
            log.warning("retention pass failed, next one retries: %s", exc)
            return
        self.stats.retained_rows += retained.rows
        self.stats.dropped_partitions += len(retained.partitions)

    def _retain_in_background(self) -> None:
        seconds = self.retention.seconds
        every = _RETAIN_EVERY_S if seconds is None else min(_RETAIN_EVERY_S, max(1.0, seconds / 8))
        while not self._retaining.is_set():
            self.retain_once()
            self._retaining.wait(every)

    def _run(self) -> None:
        topics = self.topics
        subscribed = [topics.requests, topics.predictions, topics.labels]
        group = self.settings.recorder_group
        if self._store is None:
            self._store = self._waiting_for_the_store(self._open_store)
            if self._store is None:
                return  # stopped while waiting
        with contextlib.ExitStack() as stack:
            # A replacement joins under the same id and takes the partitions over at once.
            slot = stack.enter_context(
                InstanceSlot(self.settings.data_dir, group, self.settings.instance_id)
            )
            self.stable_id = slot.stable_id
            consumer = stack.enter_context(
                self.bus.consumer(subscribed, group=group, instance_id=slot.stable_id)
            )
            producer = stack.enter_context(self.bus.producer())
            # What a killed predecessor left unsent, but not what it published and was killed
            # before marking sent: those are on the topic already.
            self.deliver(producer, outbox=True, published=self._published_keys())
            log.info(
                "recorder consuming %s into %s (retrain every %d labelled) as group member %r",
                subscribed,
                self.store.display_url,
                self.settings.retrain_every,
                slot.stable_id,
            )
            if self.retention.bounded:
                self._retaining.clear()
                retainer = threading.Thread(
                    target=self._retain_in_background, name="recorder-retention", daemon=True
                )
                retainer.start()
                stack.callback(retainer.join)
                stack.callback(self._retaining.set)
                log.info("retention: %s", self.settings.retain)
            self.ready.set()
            # Under a backlog, as many messages per transaction and offset commit as the
            # predictor acknowledges at once: each costs the same few statements and round trips
            # whatever its size.
            per_transaction = self.settings.max_batch * self.settings.batches_per_commit
            swept = status_at = time.monotonic()
            while self.running:
                self.health.beat()
                if time.monotonic() >= status_at:
                    status_at = time.monotonic() + 1.0
                    self.health.set_ready(consumer.assigned())
                    self.metrics.set_lag(consumer.lag())
                batch = consumer.poll(per_transaction, timeout=0.2)
                sweep = time.monotonic() - swept > _OUTBOX_SWEEP_S
                if sweep:
                    swept = time.monotonic()
                if not batch:
                    if sweep:
                        try:
                            self.deliver(producer, outbox=True)
                        except StoreUnavailable as exc:  # the next sweep tries again
                            log.warning("outbox not swept, store unavailable: %s", exc)
                    continue
                if not self._record_and_deliver(batch, producer, sweep=sweep):
                    break  # stopped while the database was unreachable: the batch comes again
                consumer.commit()  # only now does the batch count as done
            self.health.stopping()
            log.info(
                "recorder stopped: %d labelled observations (%s)",
                self.stats.labelled,
                self.stats.as_dict(),
            )
        self.store.close()

    # -- one batch ------------------------------------------------------------------------------
    def _record_and_deliver(self, batch: list[Message], producer: Producer, *, sweep: bool) -> bool:
        """:meth:`handle` the batch, then :meth:`deliver` its dead letters and outbox (with
        ``sweep``, the outbox even if the batch queued nothing), each step waiting out an
        unreachable database: a server restarting cuts the connection at any statement, in
        either step. False if stopped meanwhile (the offsets stay uncommitted: the batch comes
        again, and changes nothing already recorded)."""
        queued = self._waiting_for_the_store(partial(self.handle, batch, producer))
        if queued is None:
            return False
        outbox = queued or sweep
        return (
            self._waiting_for_the_store(partial(self.deliver, producer, outbox=outbox)) is not None
        )

    def _waiting_for_the_store(self, work: Callable[[], T]) -> T | None:
        """``work()``, again after a backoff for as long as the database cannot be reached;
        None if stopped meanwhile."""
        delay = 0.5
        while True:
            try:
                return work()
            except StoreUnavailable as exc:
                self.stats.store_retries += 1
                self.metrics.store_retries.inc()
                self.health.beat()  # waiting for the database is not being stuck
                log.warning("observation store unavailable (%s): retrying in %.1f s", exc, delay)
                if not self.pause(delay):
                    return None
                delay = min(delay * 2, _MAX_BACKOFF_S)

    def handle(self, batch: list[Message], producer: Producer) -> bool:
        """Record ``batch`` (one transaction) and queue its dead letters; True if a retrain
        command was queued in the outbox. Raises only :class:`StoreUnavailable`.

        Should the transaction fail for another reason, the batch is handled again message by
        message (:func:`~streamfit.ops.batches.handle_isolating`) and only the offender is
        dead-lettered, with the database's reason.
        """
        self.stats.batches += 1
        self.metrics.batches.inc()
        self._queued = False
        handle_isolating(
            batch,
            self._handle,
            producer,
            lambda message, reason: self._refuse(message, reason, producer),
            reraise=(StoreUnavailable,),
        )
        return self._queued

    def _handle(self, batch: list[Message], producer: Producer) -> None:
        decoded = decode_batch(batch, self.topics, self.schema)
        if decoded.batch:
            self._queued |= self._record(decoded.batch)
            self._count(decoded.batch)
        for refused in decoded.refused:
            self._dead_letter(producer, refused)

    def _refuse(self, message: Message, reason: str, producer: Producer) -> None:
        request_id = messages.request_id_of(message.value)
        self._dead_letter(producer, Refused(reason, message.value, request_id))

    def _record(self, batch: ObservationBatch) -> bool:
        every = self.settings.retrain_every
        outcome = self.store.record(batch, every=every, command=self._retrain_command)
        self.stats.labelled = outcome.labelled
        self.metrics.labelled.set(outcome.labelled)
        for threshold in outcome.thresholds:
            log.info("retrain queued at %d labelled observations", threshold)
        self.stats.retrains_queued += len(outcome.thresholds)
        return bool(outcome.thresholds)

    def _retrain_command(self, threshold: int, labelled: int) -> tuple[str, bytes]:
        return self.topics.retrain, messages.retrain("every_n_labelled", labelled, threshold)

    def deliver(
        self, producer: Producer, *, outbox: bool, published: frozenset[bytes] = frozenset()
    ) -> int:
        """Flush what was produced (dead letters); with ``outbox``, send the unsent outbox
        messages too, except those whose key is ``published`` already, and mark them sent once
        the broker has acknowledged them (and refresh the pending-labels count). Returns how
        many outbox messages it marked sent."""
        if not outbox:
            producer.flush()
            return 0
        with self.store.sending() as unsent:
            for message in unsent:
                if message.key not in published:
                    producer.produce(message.topic, message.value, message.key)
            producer.flush()
        pending = self.store.pending_labels()
        if pending != self.stats.pending_labels:
            log.info("%d label(s) wait for their request", pending)
        self.stats.pending_labels = pending
        self.metrics.pending_labels.set(pending)
        self.stats.retrains_sent += len(unsent)
        self.metrics.retrain_commands.inc(len(unsent))
        if unsent:
            log.info("published %d retrain command(s)", len(unsent))
        return len(unsent)

    def _published_keys(self) -> frozenset[bytes]:
        """The keys (thresholds) of the last retrain commands on the topic."""
        retrain = self.topics.retrain
        keys: set[bytes] = set()
        with self.bus.consumer([retrain], group=None, replay=_PUBLISHED_LOOKBACK) as tail:
            while batch := tail.poll(_PUBLISHED_LOOKBACK, timeout=0.5):
                keys.update(m.key for m in batch if m.key)
        return frozenset(keys)

    def _count(self, batch: ObservationBatch) -> None:
        self.stats.requests += len(batch.requests)
        self.stats.predictions += len(batch.predictions)
        self.stats.labels += len(batch.labels)
        for kind, rows in (
            ("request", batch.requests),
            ("prediction", batch.predictions),
            ("label", batch.labels),
        ):
            self.metrics.messages.labels(kind).inc(len(rows))

    def _dead_letter(self, producer: Producer, refused: Refused) -> None:
        self.stats.dead_letters += 1
        self.metrics.dead_letters.inc()
        log.warning("dead-lettered %s: %s", refused.request_id or "a message", refused.reason)
        producer.produce(
            self.topics.dead_letter,
            messages.dead_letter(refused.reason, refused.payload, refused.request_id, "recorder"),
            refused.request_id.encode() if refused.request_id else None,
        )


__all__ = ["Recorder", "RecorderStats"]

"""The predictor: requests in; predictions and dead letters out. Nothing else.

Stateless: no database, no label join, no retrain counting on the hot path (the recorder,
:mod:`streamfit.recording`, records requests, predictions and labels and asks for retrains). Its
data directory holds only the model cache.

Hot path per micro-batch: decode the whole batch from its bytes into the model's feature matrix
in C (``streamfit/_native.c``), or, for a batch with a message of another shape (an invalid one
among them), decode and validate every message in one msgspec pass and transform the columns
with NumPy (a bad message is dead-lettered, never fails its batch; should anything else raise,
the batch is handled again message by message and only the offender is dead-lettered: see
:mod:`streamfit.ops.batches`); one call of the compiled model, encode, produce. Then wait
for the broker's acks and commit the consumed offsets (at-least-once) — or commit all of it as
one Kafka transaction (exactly-once). A transaction the broker's absence cut is dropped, never
retried: the predictor starts over from the committed offsets once the broker answers (see
:class:`~streamfit.bus.TransactionAborted`).

The model lives in a :class:`~streamfit.serving._slot.ModelSlot`: at start-up it serves the
registry's ``@champion``; a watcher thread hands it each ``models`` event (version, model URI,
SHA-256), and it fetches the bundle through the tracking server into this predictor's cache,
verifies, validates, compiles and swaps between batches (see its module).

Shadow mode: a second slot holds the challenger being shadowed (``@shadow`` at start-up, then
``shadow`` / ``shadow_ended`` events). While it holds one, each batch is scored by both models
(both compiled, each by its own slot); the answer is the champion's, and the challenger's
probability and version ride along in the prediction (``shadow``) for the recorder to store. A
challenger that fails on a batch costs that batch its shadow scores, never an answer.

Canary mode (``--promotion canary``): the same two slots and scores, but the requests whose
``crc32(request_id) % 100 < canary_percent`` are answered by the challenger (their prediction's
``model_version`` is the challenger's, and the champion's score rides in ``shadow``): one hash
per request, so a redelivered request gets the same model, and every request still carries both
scores for the live judge. Nothing of it runs while no challenger is held; a challenger that
fails on a batch leaves the whole batch to the champion.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import operator
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import messages
from ..bus import (
    Bus,
    BusUnavailable,
    Consumer,
    Message,
    Producer,
    TransactionAborted,
    TransactionalProducer,
)
from ..config import Settings
from ..features import request_schema
from ..models.bundle import BundleError, ModelBundle
from ..models.registry import ModelRegistry
from ..ops.batches import handle_isolating
from ..ops.health import Health, ServiceLoop
from ..ops.heap import release_freed_memory
from ..ops.instance import InstanceSlot
from ..ops.metrics import DEAD_LETTER_CLASSES, REFUSAL_REASONS, PredictorMetrics
from ._slot import ModelSlot

log = logging.getLogger("streamfit.predictor")


class PredictorStats:
    """The predictor's counts as plain numbers, read from its thread-safe metrics (the
    watcher, the compiler thread and the loop all update them): for summaries and tests."""

    _COUNTS = {
        "predictions": ("streamfit_predictions_total", None),
        "requests": ("streamfit_predictor_requests_total", None),
        "batches": ("streamfit_predictor_batches_total", None),
        "swaps": ("streamfit_predictor_model_swaps_total", None),
        "integrity_refusals": (
            "streamfit_predictor_models_refused_total",
            {"reason": "integrity"},
        ),
        "compiled_models": ("streamfit_predictor_compiled_models_total", None),
        "compile_refusals": ("streamfit_predictor_compile_refusals_total", None),
        "shadow_predictions": ("streamfit_predictor_shadow_predictions_total", None),
        "canary_predictions": ("streamfit_predictor_canary_predictions_total", None),
    }

    def __init__(self, metrics: PredictorMetrics) -> None:
        self.metrics = metrics
        self.started = time.time()

    def __getattr__(self, name: str) -> int:
        if name not in self._COUNTS:
            raise AttributeError(name)
        sample, labels = self._COUNTS[name]
        return int(self.metrics.value(sample, labels))

    @property
    def dead_letters(self) -> int:
        return int(
            sum(
                self.metrics.value("streamfit_predictor_dead_letters_total", {"reason_class": c})
                for c in DEAD_LETTER_CLASSES
            )
        )

    @property
    def refused_models(self) -> int:
        return int(
            sum(
                self.metrics.value("streamfit_predictor_models_refused_total", {"reason": r})
                for r in REFUSAL_REASONS
            )
        )

    def as_dict(self) -> dict[str, Any]:
        counts = {name: getattr(self, name) for name in self._COUNTS}
        return {
            **counts,
            "dead_letters": self.dead_letters,
            "refused_models": self.refused_models,
            "uptime_s": round(time.time() - self.started, 1),
        }


_payload = operator.attrgetter("value")

# How often the loop refreshes its readiness (partitions assigned) and consumer lag gauges.
_STATUS_EVERY_S = 1.0
# Bound on the wait for a compiled library already built (loading and checking it takes about
# a second; a slow disk or a loaded machine may take more).
_CACHED_COMPILE_WAIT_S = 30.0
# Longest wait between two tries to start over after a dropped transaction (the broker away).
_START_OVER_BACKOFF_S = 10.0


def tune_garbage_collector() -> None:
    """For a process whose main work is the predictor's loop, once its model is loaded.

    Each micro-batch allocates thousands of short-lived objects, which CPython's default young
    collection (every 700 allocations) walks again and again: it runs every 50,000 instead
    (cycles are still collected, later). What exists once the model is loaded lives as long as
    the process: frozen, so that a full collection, a stall of the loop, no longer walks it.
    The figures: docs/benchmarks/predictor.md. Process-wide: only a predictor that owns its
    process does it (``owns_process``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Predictor(ServiceLoop):
    """``metrics``: where it counts (its own :class:`PredictorMetrics` by default); ``health``
    tells ``/healthz`` and ``/readyz`` (see :mod:`streamfit.ops.health`)."""

    service = "predictor"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        *,
        wait_for_model_s: float = 0.0,
        metrics: PredictorMetrics | None = None,
        owns_process: bool = False,
    ) -> None:
        super().__init__()
        self.settings = settings
        # The process is this predictor's (`streamfit predictor`): its garbage collector is
        # tuned for the loop before it consumes (see tune_garbage_collector).
        self.owns_process = owns_process
        self.bus = bus
        self.topics = settings.topics
        self.metrics = metrics if metrics is not None else PredictorMetrics()
        self.stats = PredictorStats(self.metrics)
        self.health = Health(self.metrics)
        self.running = False
        self.ready = threading.Event()  # set once the loop consumes
        self.slot = ModelSlot(
            ModelRegistry.from_settings(settings),
            settings.model_cache,
            self.metrics,
            compile_model=settings.compile_model,
            runtime=settings.model_runtime,
            libraries=settings.compiled_models,
        )
        # The shadowed challenger: its own slot (fetch, verify, compile), its own counters (a
        # registry of their own, not served on /metrics: their names are the champion's).
        self.shadow_metrics = PredictorMetrics()
        self.shadow_stats = PredictorStats(self.shadow_metrics)
        self.shadow = ModelSlot(
            ModelRegistry.from_settings(settings),
            settings.model_cache,
            self.shadow_metrics,
            compile_model=settings.compile_model,
            runtime=settings.model_runtime,
            libraries=settings.compiled_models,
            role="shadowing",
        )
        # Its scoring thread (started at the first batch shadowed).
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow-scorer")
        self._wait_for_model_s = wait_for_model_s
        # Canary mode's share of requests the challenger answers (0: shadow or offline mode).
        self._canary_percent = settings.canary_percent if settings.promotion == "canary" else 0

    # -- model management (the slot: fetch, verify, validate, swap, compile) -------------------
    @property
    def _bundle(self) -> ModelBundle | None:
        return self.slot.bundle

    @property
    def model_version(self) -> int | None:
        return self.slot.version

    @property
    def serving_compiled(self) -> bool:
        return self.slot.serving_compiled

    @property
    def shadow_version(self) -> int | None:
        return self.shadow.version

    def wait_for_compile(self, timeout: float | None = None) -> bool:
        """Wait until the compiler threads have dealt with the latest models; False on timeout."""
        return self.slot.wait_for_compile(timeout) and self.shadow.wait_for_compile(timeout)

    def shadow_to(
        self, version: int, sha256: str | None = None, model_uri: str | None = None
    ) -> bool:
        """Score registry ``version`` beside the champion from the next batch on (fetched,
        verified, validated and compiled as a champion is). False if refused: no shadow then."""
        if version == self.model_version:
            log.warning("not shadowing v%s: it is the champion", version)
            return False
        try:
            entry = self.shadow.entry(version, sha256, model_uri)
        except BundleError as exc:
            log.error("refused shadow model v%s: %s", version, exc)
            return False
        if not self.shadow.swap_to(entry):
            self.shadow.clear()  # a refused challenger is not left shadowing from before
            return False
        log.info("shadowing v%s beside champion v%s", version, self.model_version)
        return True

    def end_shadow(self, version: int | None = None) -> None:
        """Stop shadowing (``version``: only if it is the one shadowed)."""
        if version is None or self.shadow.version == version:
            ended = self.shadow.clear()
            if ended is not None:
                log.info("no longer shadowing v%s", ended)

    def swap_to(
        self, version: int, sha256: str | None = None, model_uri: str | None = None
    ) -> bool:
        """Fetch registry ``version`` (digest ``sha256`` if given, else the registry's), verify,
        validate and swap it in. False if refused: the old model keeps serving."""
        try:
            entry = self.slot.entry(version, sha256, model_uri)
        except BundleError as exc:
            self.metrics.models_refused.labels("invalid").inc()
            log.error("refused model v%s, still serving v%s: %s", version, self.model_version, exc)
            return False
        return self.slot.swap_to(entry)

    def _load_champion(self) -> None:
        """Serve the registry's ``@champion`` (waiting up to ``wait_for_model_s`` for one)."""
        deadline = time.monotonic() + self._wait_for_model_s
        while self.running:
            self.health.beat()  # alive while it waits for a model (not ready)
            try:
                self.slot.last_refusal = None
                if self.slot.swap_to_champion():
                    self._wait_for_cached_compile()
                    return
                problem = (
                    f"@champion {self.slot.last_refusal}"
                    if self.slot.last_refusal
                    else "no @champion (run `streamfit init` first)"
                )
            except Exception as exc:  # the tracking server is down or starting: retry
                problem = f"registry unreachable ({exc})"
            if time.monotonic() >= deadline:
                # No model to serve: the CLI turns this into one line and exit code 2.
                problem = " ".join(problem.split())  # one line, whatever the cause said
                raise BundleError(
                    f"{problem}, for {self.slot.registry.name!r} at "
                    f"{self.slot.registry.tracking_uri}"
                )
            time.sleep(0.5)

    def _wait_for_cached_compile(self, timeout: float = _CACHED_COMPILE_WAIT_S) -> None:
        """Before consuming: when the champion's compiled library is already built, wait the
        second it takes to load and check it, so the first requests are not answered by
        LightGBM at several times the cost (a new build is not waited for: LightGBM serves)."""
        if not self.slot.compiled_library_cached():
            return
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            self.health.beat()
            if self.slot.wait_for_compile(0.25):
                return

    def _load_shadow(self) -> None:
        """Shadow the registry's ``@shadow`` if there is one (a predictor started mid-test)."""
        if self.settings.promotion == "offline":
            return
        try:
            entry = self.shadow.registry.shadow()
        except Exception as exc:  # the champion serves; the next shadow event will tell
            log.warning("could not look for a shadowed challenger: %s", exc)
            return
        if entry is not None:
            self.shadow_to(entry.version, entry.sha256, entry.model_uri)

    def _watch_models(self, consumer: Consumer) -> None:
        """Background thread: follow model events (promotions, rollbacks, shadowing)."""
        while self.running:
            for message in consumer.poll(10, timeout=0.5):
                try:
                    event = messages.parse_model_event(message.value)
                except messages.InvalidMessage as exc:
                    log.error("ignoring malformed model event %r: %s", message.value[:200], exc)
                    continue
                try:
                    self.follow(event)
                except Exception:  # this thread must live on: the next event may be fine
                    self.metrics.models_refused.labels("error").inc()
                    log.exception("refused model v%s: loading it raised", event.version)

    def follow(self, event: messages.ModelEvent) -> None:
        """Act on one ``models`` event."""
        version = event.version
        if event.is_shadow and self.settings.promotion == "offline":
            log.info("ignoring %s event of v%s (--promotion offline)", event.event, version)
            return
        if event.event == "shadow_ended":
            self.end_shadow(version)
        elif event.event == "shadow":
            if version != self.shadow_version:
                self.shadow_to(version, event.sha256, event.model_uri)
        elif version != self.model_version and self.swap_to(version, event.sha256, event.model_uri):
            self.end_shadow(version)  # a promoted challenger is no longer its own shadow

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        settings = self.settings
        linger = settings.linger_ms / 1000
        exactly_once = settings.guarantee == "exactly-once"
        with contextlib.ExitStack() as stack:
            # Subscribe to model events before loading the champion, so none is missed between.
            models = stack.enter_context(self.bus.consumer([self.topics.models], group=None))
            # The id a replacement takes over: the group member's, and under exactly-once the
            # transactional id, which fences a killed predecessor's producer first of all and
            # aborts its open transaction (streamfit/instance.py).
            slot = stack.enter_context(
                InstanceSlot(settings.data_dir, settings.group, settings.instance_id)
            )
            self.stable_id = slot.stable_id
            producer: Producer
            if exactly_once:
                producer = self.bus.transactional_producer(slot.stable_id)
                log.info("exactly-once as transactional id %r", slot.stable_id)
            else:
                producer = self.bus.producer()
            stack.callback(producer.close)
            self._load_champion()
            if not self.running:
                return
            self._load_shadow()
            watcher = threading.Thread(
                target=self._watch_models, args=(models,), name="model-watcher", daemon=True
            )
            watcher.start()
            stack.callback(self._shadow_pool.shutdown)

            def open_requests() -> Consumer:
                return self.bus.consumer(
                    [self.topics.requests], group=settings.group, instance_id=slot.stable_id
                )

            consumer = open_requests()
            stack.callback(lambda: consumer.close())  # the one open at the end
            if self.owns_process:
                tune_garbage_collector()
            log.info(
                "predictor consuming %r (%s) as group member %r",
                self.topics.requests,
                settings.guarantee,
                slot.stable_id,
            )
            self.ready.set()
            status_at = 0.0
            poll_max = settings.max_batch * settings.batches_per_commit
            behind = False
            while self.running:
                self.health.beat()
                if time.monotonic() >= status_at:
                    status_at = time.monotonic() + _STATUS_EVERY_S
                    self._refresh_status(consumer)
                # Under a backlog one poll takes several micro-batches, acknowledged at once:
                # the broker's work per commit (or per transaction) is then shared by more
                # requests. Otherwise a poll returns what has arrived, one micro-batch or less.
                polled = consumer.poll(poll_max, timeout=0.2)
                if len(polled) == poll_max:
                    behind = True
                elif behind and len(polled) < settings.max_batch:
                    # Caught up: what the backlog's larger polls and fetches took is free now,
                    # but glibc keeps it (see streamfit/heap.py) until something trims the heap.
                    behind = False
                    release_freed_memory()
                if not polled:
                    continue
                started = time.perf_counter()
                if linger and len(polled) < settings.max_batch:
                    polled += consumer.poll(settings.max_batch - len(polled), timeout=linger)
                    started = time.perf_counter()  # the linger is waiting, not work
                if isinstance(producer, TransactionalProducer):
                    try:
                        producer.begin()
                        started = self._process_micro_batches(polled, producer, started)
                        producer.commit_with(consumer)
                    except TransactionAborted as exc:
                        log.warning("%s; its %d requests come again", exc, len(polled))
                        consumer.close()
                        reopened = self._start_over(producer, open_requests)
                        if reopened is None:
                            break  # stopped meanwhile
                        consumer = reopened
                        continue
                else:
                    started = self._process_micro_batches(polled, producer, started)
                    producer.flush()  # every prediction acknowledged ...
                    consumer.commit()  # ... before the requests count as done
                # The last micro-batch is timed with the acknowledgement of them all.
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self.health.stopping()
            watcher.join(timeout=2)

    def _start_over(
        self, producer: TransactionalProducer, open_requests: Callable[[], Consumer]
    ) -> Consumer | None:
        """After a dropped transaction: the producer ready again (the broker has then ended
        the dropped one, committed or not), then a new requests consumer, which starts at the
        committed offsets; waits for the broker meanwhile. None if stopped first."""
        delay = 1.0
        while self.running:
            self.health.beat()  # waiting for the broker is not being stuck
            try:
                producer.init()
                return open_requests()
            except (TransactionAborted, BusUnavailable) as exc:
                log.warning(
                    "starting over once the broker answers (%s): retrying in %g s", exc, delay
                )
                if not self.pause(delay):
                    break
                delay = min(delay * 2, _START_OVER_BACKOFF_S)
        return None

    def _process_micro_batches(
        self, polled: list[Message], producer: Producer, started: float
    ) -> float:
        """``polled`` in micro-batches of ``max_batch`` (the model's batch, and the unit a
        failure is isolated in), each but the last timed in ``batch_seconds``; returns when
        the last one started (the caller times it with the acknowledgement that follows)."""
        size = self.settings.max_batch
        for at in range(0, len(polled), size):
            if at:
                now = time.perf_counter()
                self.metrics.batch_seconds.observe(now - started)
                started = now
            self.process_isolating(polled[at : at + size], producer)
        return started

    def _refresh_status(self, consumer: Consumer) -> None:
        """Readiness (a model, and partitions to read) and the consumer lag gauges."""
        self.health.set_ready(self._bundle is not None and consumer.assigned())
        self.metrics.set_lag(consumer.lag())

    def process_isolating(self, batch: list[Message], producer: Producer) -> None:
        """:meth:`process`, where an unexpected exception dead-letters only the message behind
        it (the batch is retried message by message) instead of stopping the predictor."""

        def dead_letter(message: Message, reason: str) -> None:
            self._dead_letter(producer, reason, message.value, reason_class="error")

        handle_isolating(batch, self.process, producer, dead_letter)

    def process(self, batch: list[Message], producer: Producer) -> None:
        """Predict a micro-batch; dead-letter what cannot be predicted. Never raises on input."""
        self.metrics.observe_batch(batch, self._predict(batch, producer))

    def _predict(self, requests: list[Message], producer: Producer) -> int:
        """Predict ``requests``; the number of predictions produced."""
        bundle = self._bundle  # one model per batch, even if a swap lands meanwhile
        assert bundle is not None
        payloads = list(map(_payload, requests))
        parsed = messages.parse_requests(payloads, bundle.pipeline)
        for position, error in parsed.rejected:
            self._dead_letter(
                producer, str(error), requests[position].value, error.request_id, "invalid"
            )
        if not parsed.ids:
            return 0
        # The shadowed challenger scores the batch on a thread of its own meanwhile: both
        # models' native code runs without the GIL, so a free core takes the second model.
        challenger = self._shadow_challenger(bundle)
        scoring = (
            None
            if challenger is None
            else self._shadow_pool.submit(self._shadow_scores, challenger, parsed)
        )
        scored: list[int] | None = None  # the rows scored, when not all were
        try:
            probabilities = bundle.predict_matrix(parsed.features(bundle.pipeline)).tolist()
        except (OverflowError, ValueError, TypeError):
            # A value the schema let through but NumPy cannot take (an integer beyond float
            # range): find it row by row, so only its own message fails.
            if parsed.native is not None:
                # as columns, to take row by row
                parsed = messages.parse_requests(payloads, schema=request_schema(bundle.contract))
            probabilities = self._predict_one_by_one(bundle, parsed, requests, producer)
            scored = [i for i, p in enumerate(probabilities) if p is not None]
        shadow = None if scoring is None else scoring.result()
        ids, version = parsed.ids, bundle.version
        if scored is not None and len(scored) < len(ids):
            shadow = None  # rows the champion could not score: the batch goes without them
            ids = [ids[i] for i in scored]
            probabilities = [probabilities[i] for i in scored]
        if shadow is not None and self._canary_percent:
            ids, values = self._canary_answers(ids, probabilities, bundle, shadow)
        else:
            values = messages.predictions(ids, probabilities, version, shadow, bundle.rules)
        producer.produce_many(self.topics.predictions, values, list(map(str.encode, ids)))
        if shadow is not None:
            self.metrics.shadow_predictions.inc(len(ids))
        return len(ids)

    def _canary_answers(
        self,
        ids: list[str],
        champion: list[Any],
        bundle: ModelBundle,
        challenger: tuple[int, list[Any]],
    ) -> tuple[list[str], list[bytes]]:
        """Canary mode: the request ids and predictions of a batch whose canary share (a stable
        hash of the id) is answered by the challenger, the rest by the champion; both scores in
        each."""
        percent, champion_version = self._canary_percent, bundle.version
        challenger_version, theirs = challenger
        canary = [zlib.crc32(request_id.encode()) % 100 < percent for request_id in ids]
        mine = [i for i, c in enumerate(canary) if not c]
        picked = [i for i, c in enumerate(canary) if c]
        out_ids: list[str] = []
        out: list[bytes] = []
        for rows, answers, answered_by, scored, other_version in (
            (mine, champion, champion_version, theirs, challenger_version),
            (picked, theirs, challenger_version, champion, champion_version),
        ):
            if not rows:
                continue
            group = [ids[i] for i in rows]
            values = messages.predictions(
                group,
                [answers[i] for i in rows],
                answered_by,
                (other_version, [scored[i] for i in rows]),
                bundle.rules,
            )
            out_ids += group
            out += values
        self.metrics.canary_predictions.inc(len(picked))
        return out_ids, out

    def _shadow_challenger(self, champion: ModelBundle) -> ModelBundle | None:
        """The challenger shadowed for this batch (read once per batch, as the champion)."""
        challenger = self.shadow.bundle
        if challenger is None or challenger.version == champion.version:
            return None
        return challenger

    @staticmethod
    def _shadow_scores(
        challenger: ModelBundle, parsed: messages.RequestBatch
    ) -> tuple[int, list[float]] | None:
        """The shadowed challenger's version and probabilities for the batch, or None (it
        failed on this batch: the answers go out without them)."""
        try:
            scores = challenger.predict_matrix(parsed.features(challenger.pipeline))
            if not np.all(np.isfinite(scores)):  # the recorder would refuse the predictions
                raise ValueError("the challenger returned a non-finite probability")
            scores = scores.tolist()
        except (OverflowError, ValueError, TypeError) as exc:
            log.warning("shadow v%s skipped a batch: %s", challenger.version, exc)
            return None
        return challenger.version, scores

    def _predict_one_by_one(
        self,
        bundle: ModelBundle,
        parsed: messages.RequestBatch,
        requests: list[Message],
        producer: Producer,
    ) -> list[Any]:
        out: list[Any] = []
        for row, (request_id, position) in enumerate(
            zip(parsed.ids, parsed.positions, strict=True)
        ):
            one = {name: values[row : row + 1] for name, values in parsed.columns.items()}
            try:
                output = bundle.predict_columns(one)[0]
                if not np.all(np.isfinite(output)):
                    raise ValueError("the model returned a non-finite output")
            except (OverflowError, ValueError, TypeError) as exc:
                reason = f"cannot be predicted: {exc}"
                self._dead_letter(
                    producer, reason, requests[position].value, request_id, "unpredictable"
                )
                out.append(None)
            else:
                out.append(output.tolist())
        return out

    def _dead_letter(
        self,
        producer: Producer,
        error: str,
        payload: bytes,
        request_id: str | None = None,
        reason_class: str = "invalid",
    ) -> None:
        self.metrics.dead_lettered(reason_class)
        log.warning("dead-lettered %s: %s", request_id or "a message", error)
        producer.produce(
            self.topics.dead_letter,
            messages.dead_letter(error, payload, request_id),
            request_id.encode() if request_id else None,
        )

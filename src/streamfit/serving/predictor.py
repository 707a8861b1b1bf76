"""The predictor: requests in; predictions and dead letters out. Nothing else.

Stateless: no database, no label join, no retrain counting on the hot path (the recorder,
:mod:`streamfit.recording`, records requests, predictions and labels and asks for retrains). Its
data directory holds only the model cache.

Hot path per micro-batch: decode and validate every message in one msgspec pass (a bad one is
dead-lettered, never fails its batch; should anything else raise, the batch is handled again
message by message and only the offender is dead-lettered: see :mod:`streamfit.batches`),
transform the whole batch as columns with NumPy, one LightGBM call, encode, produce. Then wait
for the broker's acks and commit the consumed offsets (at-least-once) — or commit all of it as
one Kafka transaction (exactly-once). New models are
loaded and validated by a watcher thread and swapped in by a single reference assignment between
batches. Each model that starts serving is then compiled (treelite + tl2cgen, or its cached
library loaded) and checked against LightGBM by a compiler thread; if it matches and is still the
model serving, the compiled copy is swapped in the same way. LightGBM serves until then, and for
good when there is no C compiler or the compiled copy is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import messages
from ..batches import handle_isolating
from ..bundle import BundleError, ModelBundle, ModelStore
from ..bus import Bus, Consumer, Message, Producer, TransactionalProducer
from ..config import Settings
from ._compiled import CompileError, compile_bundle, compiled_bundle, compiler

log = logging.getLogger("streamfit.predictor")


@dataclass
class PredictorStats:
    """Service metrics, read by progress displays and the metrics endpoint."""

    predictions: int = 0
    dead_letters: int = 0
    batches: int = 0
    swaps: int = 0
    refused_models: int = 0
    compiled_models: int = 0  # compiled copies swapped in
    compile_refusals: int = 0  # models left on LightGBM (compile failed, mismatch)
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "uptime_s": round(time.time() - self.started, 1)}


class Predictor:
    def __init__(self, settings: Settings, bus: Bus, *, wait_for_model_s: float = 0.0) -> None:
        self.settings = settings
        self.bus = bus
        self.topics = settings.topics
        self.store = ModelStore(settings.models_dir, settings.keep_models)
        self.stats = PredictorStats()
        self.running = False
        self.ready = threading.Event()  # set once the loop consumes
        self._bundle: ModelBundle | None = None
        self._wait_for_model_s = wait_for_model_s
        # Compiled models: the swap lock orders swaps by the watcher and the compiler thread
        # (the hot path only reads self._bundle, once per batch).
        self._swap_lock = threading.Lock()
        self._compile_wanted: ModelBundle | None = None
        self._compile_wake = threading.Event()
        self._compile_idle = threading.Event()
        self._compile_idle.set()
        self._compiler_thread: threading.Thread | None = None
        self._no_compiler_said = False

    # -- model management ---------------------------------------------------------------------
    @property
    def model_version(self) -> int | None:
        bundle = self._bundle
        return bundle.version if bundle else None

    def swap_to(self, version: int) -> bool:
        """Load, validate and warm bundle ``version``, then swap it in. False if refused."""
        try:
            bundle = self.store.load(version)
            bundle.validate()  # also warms the model: the first real batch pays nothing extra
        except BundleError as exc:
            self.stats.refused_models += 1
            log.error("refused model v%s, still serving v%s: %s", version, self.model_version, exc)
            return False
        with self._swap_lock:
            previous, self._bundle = self.model_version, bundle  # atomic reference swap
        self.stats.swaps += 1
        log.info("now serving model v%s (was v%s)", bundle.version, previous)
        if self.settings.compile_model:
            self._request_compile(bundle)
        return True

    # -- compiled models (off the hot path) ---------------------------------------------------
    @property
    def serving_compiled(self) -> bool:
        return getattr(self._bundle, "compiled", None) is not None

    def wait_for_compile(self, timeout: float | None = None) -> bool:
        """Wait until the compiler thread has dealt with the latest model; False on timeout."""
        return self._compile_idle.wait(timeout)

    def _request_compile(self, bundle: ModelBundle) -> None:
        if compiler() is None:
            if not self._no_compiler_said:
                self._no_compiler_said = True
                log.warning(
                    "no C compiler found (%s): serving with LightGBM, not a compiled model",
                    os.environ.get("CC", "gcc"),
                )
            return
        with self._swap_lock:
            self._compile_wanted = bundle  # a newer model supersedes one not started yet
            self._compile_idle.clear()
            if self._compiler_thread is None:
                self._compiler_thread = threading.Thread(
                    target=self._compile_models, name="model-compiler", daemon=True
                )
                self._compiler_thread.start()
        self._compile_wake.set()

    def _compile_models(self) -> None:
        """Compiler thread: one model at a time, the newest asked for, at a lower priority."""
        with contextlib.suppress(OSError, AttributeError):  # this thread and the gcc it runs
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            self._compile_wake.wait()
            with self._swap_lock:
                self._compile_wake.clear()
                bundle, self._compile_wanted = self._compile_wanted, None
            if bundle is not None and bundle is self._bundle:
                self._compile(bundle)
            with self._swap_lock:
                if self._compile_wanted is None:
                    self._compile_idle.set()

    def _compile(self, bundle: ModelBundle) -> None:
        version = bundle.version
        try:
            compiled = compile_bundle(bundle, self.store.path(version))
        except CompileError as exc:
            self.stats.compile_refusals += 1
            log.warning("model v%s stays on LightGBM: %s", version, exc)
            return
        except Exception:  # never let the compiler thread die: LightGBM keeps serving
            self.stats.compile_refusals += 1
            log.exception("model v%s stays on LightGBM: compiling it raised", version)
            return
        with self._swap_lock:
            if self._bundle is not bundle:
                log.info("compiled model v%s not swapped in: no longer the model serving", version)
                return
            self._bundle = compiled_bundle(bundle, compiled)  # atomic reference swap
        self.stats.compiled_models += 1
        log.info(
            "serving model v%s compiled (%.1f µs/row vs %.1f µs/row with LightGBM; %s; "
            "max abs difference %.3g on %s checked rows)",
            version,
            compiled.us_per_row,
            compiled.lightgbm_us_per_row,
            f"built in {compiled.compile_s:.1f} s" if compiled.compiled else "cached library",
            compiled.max_abs_diff,
            compiled.checked_rows,
        )

    def _load_champion(self) -> None:
        deadline = time.monotonic() + self._wait_for_model_s
        while self.running:
            version = self.store.champion()
            if version is not None and self.swap_to(version):
                return
            if time.monotonic() >= deadline:
                raise BundleError(
                    f"no usable champion model in {self.store.root}: run `streamfit init` first"
                )
            time.sleep(0.5)

    def _watch_models(self, consumer: Consumer) -> None:
        """Background thread: follow model-ready events (promotions, rollbacks)."""
        while self.running:
            for message in consumer.poll(10, timeout=0.5):
                try:
                    version = messages.model_event_version(message.value)
                except messages.InvalidMessage as exc:
                    log.error("ignoring malformed model event %r: %s", message.value[:200], exc)
                    continue
                if version == self.model_version:
                    continue
                try:
                    self.swap_to(version)
                except Exception:  # this thread must live on: the next event may be fine
                    self.stats.refused_models += 1
                    log.exception("refused model v%s: loading it raised", version)

    # -- the loop -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its batch, flush, commit and return. Safe from a signal."""
        self.running = False

    def run(self) -> None:
        self.running = True
        settings = self.settings
        linger = settings.linger_ms / 1000
        exactly_once = settings.guarantee == "exactly-once"
        with contextlib.ExitStack() as stack:
            # Subscribe to model events before loading the champion, so none is missed between.
            models = stack.enter_context(self.bus.consumer([self.topics.models], group=None))
            self._load_champion()
            if not self.running:
                return
            watcher = threading.Thread(
                target=self._watch_models, args=(models,), name="model-watcher", daemon=True
            )
            watcher.start()
            consumer = stack.enter_context(
                self.bus.consumer([self.topics.requests], group=settings.group)
            )
            producer: Producer
            if exactly_once:
                producer = self.bus.transactional_producer(f"{settings.group}-{id(self)}")
            else:
                producer = self.bus.producer()
            stack.callback(producer.close)
            log.info("predictor consuming %r (%s)", self.topics.requests, settings.guarantee)
            self.ready.set()
            while self.running:
                batch = consumer.poll(settings.max_batch, timeout=0.2)
                if not batch:
                    continue
                if linger and len(batch) < settings.max_batch:
                    batch += consumer.poll(settings.max_batch - len(batch), timeout=linger)
                if isinstance(producer, TransactionalProducer):
                    producer.begin()
                    self.process_isolating(batch, producer)
                    producer.commit_with(consumer)
                else:
                    self.process_isolating(batch, producer)
                    producer.flush()  # every prediction acknowledged ...
                    consumer.commit()  # ... before the requests count as done
            watcher.join(timeout=2)

    def process_isolating(self, batch: list[Message], producer: Producer) -> None:
        """:meth:`process`, where an unexpected exception dead-letters only the message behind
        it (the batch is retried message by message) instead of stopping the predictor."""

        def dead_letter(message: Message, reason: str) -> None:
            self._dead_letter(producer, reason, message.value)

        handle_isolating(batch, self.process, producer, dead_letter)

    def process(self, batch: list[Message], producer: Producer) -> None:
        """Predict a micro-batch; dead-letter what cannot be predicted. Never raises on input."""
        self._predict(batch, producer)
        self.stats.batches += 1

    def _predict(self, requests: list[Message], producer: Producer) -> None:
        bundle = self._bundle  # one model per batch, even if a swap lands meanwhile
        assert bundle is not None
        parsed = messages.parse_requests([m.value for m in requests])
        for position, error in parsed.rejected:
            self._dead_letter(producer, str(error), requests[position].value, error.request_id)
        if not parsed.ids:
            return
        try:
            probabilities = bundle.predict_columns(parsed.columns).tolist()
        except (OverflowError, ValueError, TypeError):
            # A value the schema let through but NumPy cannot take (an integer beyond float
            # range): find it row by row, so only its own message fails.
            probabilities = self._predict_one_by_one(bundle, parsed, requests, producer)
        ids, version = parsed.ids, bundle.version
        kept = [i for i, p in enumerate(probabilities) if p is not None]
        if len(kept) < len(ids):
            ids = [ids[i] for i in kept]
            probabilities = [probabilities[i] for i in kept]
        topic, produce = self.topics.predictions, producer.produce
        for request_id, value in zip(
            ids, messages.predictions(ids, probabilities, version), strict=True
        ):
            produce(topic, value, request_id.encode())
        self.stats.predictions += len(ids)

    def _predict_one_by_one(
        self,
        bundle: ModelBundle,
        parsed: messages.RequestBatch,
        requests: list[Message],
        producer: Producer,
    ) -> list[float | None]:
        out: list[float | None] = []
        for row, (request_id, position) in enumerate(
            zip(parsed.ids, parsed.positions, strict=True)
        ):
            one = {name: values[row : row + 1] for name, values in parsed.columns.items()}
            try:
                probability = float(bundle.predict_columns(one)[0])
                if not np.isfinite(probability):
                    raise ValueError("the model returned a non-finite probability")
            except (OverflowError, ValueError, TypeError) as exc:
                reason = f"cannot be predicted: {exc}"
                self._dead_letter(producer, reason, requests[position].value, request_id)
                out.append(None)
            else:
                out.append(probability)
        return out

    def _dead_letter(
        self, producer: Producer, error: str, payload: bytes, request_id: str | None = None
    ) -> None:
        self.stats.dead_letters += 1
        log.warning("dead-lettered %s: %s", request_id or "a message", error)
        producer.produce(
            self.topics.dead_letter,
            messages.dead_letter(error, payload, request_id),
            request_id.encode() if request_id else None,
        )

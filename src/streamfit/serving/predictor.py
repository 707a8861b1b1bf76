"""The predictor: requests in, predictions out, a retrain asked for every N labelled rows.

Hot path per micro-batch: decode + validate each message (a bad one is dead-lettered, never
fails its batch), transform the whole batch with NumPy, one LightGBM call, encode, produce,
wait for the acks, then commit the consumed offsets (at-least-once) — or do all of it inside a
Kafka transaction (exactly-once). New models are loaded and validated by a watcher thread and
swapped in by a single reference assignment between batches.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import messages
from ..bundle import BundleError, ModelBundle, ModelStore
from ..bus import Bus, Consumer, Message, Producer, TransactionalProducer
from ..config import Settings
from ..data import LABEL_COLUMN, label_to_int
from ..features import validate_record
from ..observations import Observation, ObservationStore

log = logging.getLogger("streamfit.predictor")


@dataclass
class PredictorStats:
    """Service metrics, read by progress displays and the metrics endpoint."""

    predictions: int = 0
    dead_letters: int = 0
    labels: int = 0
    batches: int = 0
    retrains_requested: int = 0
    swaps: int = 0
    refused_models: int = 0
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "uptime_s": round(time.time() - self.started, 1)}


class Predictor:
    def __init__(self, settings: Settings, bus: Bus, *, wait_for_model_s: float = 0.0) -> None:
        self.settings = settings
        self.bus = bus
        self.topics = settings.topics
        self.store = ModelStore(settings.models_dir, settings.keep_models)
        self.observations = ObservationStore(settings.observations_path)
        self.stats = PredictorStats()
        self.running = False
        self.ready = threading.Event()  # set once the loop consumes
        self._bundle: ModelBundle | None = None
        self._labelled_since_retrain = 0
        self._wait_for_model_s = wait_for_model_s

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
        previous, self._bundle = self.model_version, bundle  # atomic reference swap
        self.stats.swaps += 1
        log.info("now serving model v%s (was v%s)", bundle.version, previous)
        return True

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
                    event = messages.decode(message.value)
                    version = int(event["version"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("ignoring malformed model event %r: %s", message.value[:200], exc)
                    continue
                if version != self.model_version:
                    self.swap_to(version)

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
                self.bus.consumer([self.topics.requests, self.topics.labels], group=settings.group)
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
                    self.process(batch, producer)
                    producer.commit_with(consumer)
                else:
                    self.process(batch, producer)
                    producer.flush()  # every prediction acknowledged ...
                    consumer.commit()  # ... before the requests count as done
            watcher.join(timeout=2)

    def process(self, batch: list[Message], producer: Producer) -> None:
        """Predict a micro-batch; dead-letter what cannot be predicted. Never raises on input."""
        topics = self.topics
        bundle = self._bundle  # one model per batch, even if a swap lands meanwhile
        assert bundle is not None
        ids: list[str] = []
        rows: list[dict[str, Any]] = []
        labels: list[int | None] = []
        late_labels: list[tuple[str, int]] = []
        for message in batch:
            if message.topic == topics.labels:
                self._read_label(message, late_labels, producer)
                continue
            try:
                request_id, data = messages.parse_request(message.value)
                error = validate_record(data)
                if error:
                    raise messages.InvalidMessage(error, request_id)
            except messages.InvalidMessage as exc:
                self._dead_letter(producer, str(exc), message.value, exc.request_id)
                continue
            ids.append(request_id)
            rows.append(data)
            labels.append(label_to_int(data.get(LABEL_COLUMN)))
        new_labelled = 0
        if rows:
            probabilities = bundle.predict_records(rows).tolist()
            version = bundle.version
            # Stored before it is answered: whoever sees a prediction can attach its label.
            observations: list[Observation] = [
                (rid, orjson.dumps(row), p, version, label)
                for rid, row, p, label in zip(ids, rows, probabilities, labels, strict=True)
            ]
            new_labelled += self.observations.add(observations)
            produce = producer.produce
            for request_id, probability in zip(ids, probabilities, strict=True):
                produce(
                    topics.predictions,
                    messages.prediction(request_id, probability, version),
                    request_id.encode(),
                )
            self.stats.predictions += len(rows)
        if late_labels:
            added, unknown = self.observations.set_labels(late_labels)
            new_labelled += added
            self.stats.labels += added
            for request_id in unknown:
                payload = orjson.dumps({"request_id": request_id})
                self._dead_letter(producer, "label for an unknown request_id", payload, request_id)
        self.stats.batches += 1
        self._count_labelled(new_labelled, producer)

    def _read_label(
        self, message: Message, into: list[tuple[str, int]], producer: Producer
    ) -> None:
        try:
            record = messages.decode(message.value)
            request_id = record["request_id"]
            label = label_to_int(record.get("label", record.get(LABEL_COLUMN)))
            if not isinstance(request_id, str) or label is None:
                raise ValueError("a label needs a string 'request_id' and a 0/1 'label'")
        except (ValueError, KeyError, TypeError) as exc:
            self._dead_letter(producer, f"invalid label: {exc}", message.value)
            return
        into.append((request_id, label))

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

    def _count_labelled(self, new_labelled: int, producer: Producer) -> None:
        self._labelled_since_retrain += new_labelled
        if self._labelled_since_retrain >= self.settings.retrain_every:
            total = self.observations.count(labelled=True)
            producer.produce(self.topics.retrain, messages.retrain("every_n_labelled", total))
            # One command however many multiples of N a batch crossed (the trainer would coalesce
            # them anyway); the remainder carries over so the count stays exact.
            self._labelled_since_retrain %= self.settings.retrain_every
            self.stats.retrains_requested += 1
            log.info("asked for a retrain (%d labelled observations in store)", total)

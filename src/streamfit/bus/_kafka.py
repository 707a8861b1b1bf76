"""Kafka bus on confluent-kafka (librdkafka): the only module of streamfit that imports it.

Lazy: building a :class:`KafkaBus` touches no network. The first call that needs the broker
(``producer()``, ``consumer()``, ``ensure_topics()``...) checks it answers, retrying with
exponential backoff for ``connect_timeout`` seconds before raising :class:`BusUnavailable`.
After that, librdkafka reconnects on its own: a broker that restarts mid-stream costs latency,
not errors (transport errors are logged; messages wait up to ``message.timeout.ms``).

Decisions worth knowing:

* Producers are idempotent (``acks=all``) and batch for throughput (``linger.ms=5``, lz4).
  ``produce`` never waits on the network; ``flush`` raises :class:`DeliveryError` for any message
  that failed or was not acknowledged in time since the last flush.
* Group consumers never auto-commit; ``commit`` commits exactly the offsets ``poll`` returned.
  Offsets of partitions taken away by a rebalance are dropped, so their messages go to the new
  owner again (at-least-once).
* Broadcast consumers (``group=None``) are assigned every partition explicitly at its current
  end offset, read once in the constructor: no group join, and no window in which a message
  published after the constructor returned could be skipped, as ``auto.offset.reset=latest``
  would allow. Partitions added later are not followed.
* ``poll`` returns what is waiting at once and waits only for the first message
  (``Consumer.consume`` alone would wait for the whole batch or the full timeout).
* A broker that refuses the client (SASL authentication failed, or the principal may not read
  a topic, write one, use a group or a transactional id) raises :class:`BusRefused` naming the
  principal and what it was refused, at once: no retry fixes it. A client that speaks plaintext
  to a TLS listener is refused too (librdkafka hints at it; the broker just closes the socket).
  Topics a principal may not create are left to the admin (``scripts/kafka up --secure``).
* A static member (``group.instance.id``) fenced by its own rejoin, not by a twin, rejoins:
  librdkafka gives up a session the broker did not answer for ``session.timeout.ms`` (a broker
  restart that long), rejoins under a new member id and then reports the old session's commit
  fenced as a fatal error. A twin shows as another member id holding the instance id while this
  consumer still has its own.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ._base import (
    Bus,
    BusError,
    BusFenced,
    BusRefused,
    BusUnavailable,
    Consumer,
    DeliveryError,
    Message,
    Producer,
    TransactionAborted,
    TransactionalProducer,
)
from ._group_holder import group_holder

log = logging.getLogger(__name__)
_librdkafka_log = logging.getLogger(__name__ + ".librdkafka")

# Errors of a broker that is down or restarting: librdkafka retries them by itself.
_TRANSIENT = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.UNKNOWN_TOPIC_OR_PART,  # a topic that is being created
}
# Errors no retry fixes: raised to the caller instead of logged.
_FATAL_FOR_CONSUMER = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError._INVALID_ARG,
}
# Refusals: the credentials are wrong, or the principal lacks an ACL. Raised as BusRefused.
_AUTHENTICATION = {KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._AUTHENTICATION}
_AUTHORIZATION = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}
# What librdkafka logs (a line, not an error) when the broker closes the socket during the
# handshake: a plaintext client on a TLS listener (closed during the very first request), or a
# TLS client without SASL on a SASL_SSL one (closed as soon as the TLS session is up). Seen
# this often in a row while connecting, it is not a restart (a broker that is down refuses the
# connection instead; one going down closes connections that were up for longer).
_PROTOCOL_HINT = re.compile(
    r"incorrect security\.protocol"  # librdkafka < 2.x says so
    r"|in state APIVERSION_QUERY"  # newer ones: "connection closed by peer ... in state ..."
    r"|closed by peer \(after \d{1,3}ms in state UP\)"
)
_PROTOCOL_HINTS_TO_REFUSE = 3
_COMMIT_ATTEMPTS = 5
# A commit refused because the group is rebalancing: its partitions get a new owner, who reads
# the uncommitted messages again.
_REBALANCING = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
}

_MESSAGE_TIMEOUT_MS = 120_000
# A newer producer with this transactional id fenced this one (librdkafka's own code, and the
# broker's, which it may pass on).
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
# A transaction's messages purged by its abort (or its producer's) are not delivery failures.
_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
# How long past its own timeout a transactional call may take before its producer is left behind.
_TRANSACTION_MARGIN_S = 15.0
_INIT_ATTEMPTS = 5

_PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
    # Long enough to ride out a broker restart; flush() waits for it and reports what failed.
    "message.timeout.ms": _MESSAGE_TIMEOUT_MS,
    "delivery.report.only.error": True,  # only failures need a callback
}

# librdkafka's default session timeout: a member that dies without a replacement under its
# instance id keeps its partitions this long (streamfit/instance.py).
_SESSION_TIMEOUT_MS = 45_000

_CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": False,
    "fetch.wait.max.ms": 100,
}


def _describe(error: KafkaError) -> str:
    return f"{error.name()}: {error.str()}"


def _raise_from(exc: KafkaException, what: str, cls: type[BusError] = BusError) -> BusError:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    detail = _describe(error) if error is not None else str(exc)
    if error is not None and error.code() in _FENCED:
        cls = BusFenced  # whatever call noticed it: no retry or abort helps a fenced producer
    return cls(f"{what}: {detail}")


def _principal(config: dict[str, Any]) -> str:
    """The principal the broker sees: the SASL user name, or ANONYMOUS without SASL."""
    if "sasl" in str(config.get("security.protocol", "")).lower():
        return str(config.get("sasl.username", "")) or "?"
    return "ANONYMOUS"


def _refusal(principal: str, error: KafkaError, what: str) -> BusRefused:
    """One line that says who was refused what, e.g. not authorised to write topic 'models'."""
    code = error.code()
    if code in _AUTHENTICATION:
        return BusRefused(
            f"Kafka refused principal {principal!r}: authentication failed "
            f"(wrong user name or password?): {error.str()}"
        )
    return BusRefused(f"Kafka refused principal {principal!r}: not authorised to {what}")


def _refused(error: KafkaError | None) -> bool:
    return error is not None and error.code() in _AUTHENTICATION | _AUTHORIZATION


class KafkaBus(Bus):
    """Bus on a Kafka cluster reached at ``bootstrap`` ("host:port[,host:port...]").

    ``options`` are librdkafka settings merged into every client's configuration, after and so
    over streamfit's defaults (``security.protocol``, ``sasl.*``, ``ssl.*``...).
    ``connect_timeout`` bounds how long the first call waits for an unreachable broker.
    """

    def __init__(
        self, bootstrap: str, options: dict[str, str], *, connect_timeout: float = 30.0
    ) -> None:
        if not bootstrap:
            raise ValueError("bootstrap must be 'host:port', got an empty string")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout}")
        self.url = f"kafka://{bootstrap}"
        self.bootstrap = bootstrap
        self.options = dict(options)
        self.connect_timeout = connect_timeout
        self.principal = _principal(self.options)
        self._admin: AdminClient | None = None
        self._admin_reporter = _ErrorReporter(bootstrap)
        self._reachable = False

    # -- Bus ------------------------------------------------------------------------------------
    def producer(self) -> Producer:
        self._wait_reachable()
        return _KafkaProducer(self._config(_PRODUCER_DEFAULTS), self.principal)

    def transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        self._wait_reachable()
        config = self._config(
            _PRODUCER_DEFAULTS,
            # librdkafka wants message.timeout.ms <= transaction.timeout.ms
            {"transactional.id": transactional_id, "transaction.timeout.ms": _MESSAGE_TIMEOUT_MS},
        )
        producer = _KafkaTransactionalProducer(config, self.principal)
        try:
            # Now, not at the first transaction: a restarted service fences its predecessor
            # (and the broker aborts that one's open transaction) before it even has input.
            producer.init()
        except BaseException:
            producer.close()
            raise
        return producer

    def consumer(
        self,
        topics: list[str],
        group: str | None,
        *,
        read_committed: bool = True,
        replay: int = 0,
        max_poll_interval_s: float | None = None,
        instance_id: str | None = None,
    ) -> Consumer:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self._wait_reachable()
        self._create_missing(topics)
        isolation = "read_committed" if read_committed else "read_uncommitted"
        settings: dict[str, Any] = {"isolation.level": isolation}
        if group is None:
            # A private group id that never commits: librdkafka wants one even without a join.
            settings |= {
                "group.id": f"streamfit-broadcast-{uuid.uuid4().hex}",
                "auto.offset.reset": "latest",
            }
            config = self._config(_CONSUMER_DEFAULTS, settings)
            return _KafkaConsumer(config, topics, None, self.principal, replay)
        settings |= {"group.id": group, "auto.offset.reset": "earliest"}
        if instance_id:
            settings["group.instance.id"] = instance_id
        config = self._config(_CONSUMER_DEFAULTS, settings)
        if max_poll_interval_s is not None:
            interval_ms = round(max_poll_interval_s * 1000)
            config["max.poll.interval.ms"] = interval_ms
            # librdkafka refuses a session longer than the poll interval: a member that must
            # poll this often is given up after as long without a heartbeat too.
            session_ms = int(config.get("session.timeout.ms", _SESSION_TIMEOUT_MS))
            config["session.timeout.ms"] = min(session_ms, interval_ms)
        return _KafkaConsumer(
            config, topics, group, self.principal, instance_id=instance_id, holder=self._holder
        )

    def ensure_topics(self, partitions: dict[str, int]) -> None:
        for name, count in partitions.items():
            if count < 1:
                raise ValueError(f"topic {name!r} needs at least 1 partition, got {count}")
        self._wait_reachable()
        self._create_missing(list(partitions), partitions)

    def close(self) -> None:
        self._admin = None

    # -- internals ------------------------------------------------------------------------------
    def _holder(self, group: str, instance_id: str) -> str | None:
        """The member id that holds ``instance_id`` in ``group``, "" if none does; None if the
        group cannot be described (asked in a child process: see :mod:`._group_holder`)."""
        return group_holder(self.bootstrap, self.options, group, instance_id)

    def _config(
        self, *layers: dict[str, Any], reporter: _ErrorReporter | None = None
    ) -> dict[str, Any]:
        reporter = reporter or _ErrorReporter(self.bootstrap)
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "log.connection.close": False,  # idle disconnects are normal
            # librdkafka logs every failed reconnect (hundreds a second while a broker restarts):
            # errors reach the reporter, which keeps critical lines only and notes the hint of
            # a wrong security.protocol; error_cb reports the errors, muting repeats.
            "log_level": 3,
            "logger": reporter,
            "error_cb": reporter,
        }
        for layer in layers:
            config |= layer
        return config | self.options

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            try:
                # Its disconnects are logged (at INFO, to the reporter only): they tell a
                # plaintext client on a TLS listener from a broker that is down.
                config = self._config(
                    {"log_level": 6, "log.connection.close": True}, reporter=self._admin_reporter
                )
                self._admin = AdminClient(config)
            except KafkaException as exc:
                raise _raise_from(exc, "invalid Kafka client settings (--bus-option)") from exc
        return self._admin

    def _wait_reachable(self) -> None:
        """Check once that the cluster answers, retrying with exponential backoff."""
        if self._reachable:
            return
        admin = self._admin_client()
        reporter = self._admin_reporter
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.5
        while True:
            try:
                # Each attempt is short: librdkafka keeps reconnecting within it.
                admin.list_topics(timeout=max(0.2, min(2.0, deadline - time.monotonic())))
            except KafkaException as exc:
                admin.poll(0)  # serve librdkafka's queued log lines and errors
                self._raise_if_refused(reporter)
                remaining = deadline - time.monotonic()
                if remaining <= 0.1:
                    raise _raise_from(
                        exc,
                        f"Kafka broker at {self.bootstrap} not reachable after "
                        f"{self.connect_timeout:g} s",
                        BusUnavailable,
                    ) from exc
                wait = min(delay, remaining)
                log.warning(
                    "Kafka broker at %s not reachable, retrying in %.1fs", self.bootstrap, wait
                )
                time.sleep(wait)
                delay = min(delay * 2, 8.0)
            else:
                self._reachable = True
                return

    def _raise_if_refused(self, reporter: _ErrorReporter) -> None:
        """Fail at once when the broker refuses the login: waiting would not change it."""
        if reporter.refusal is not None:
            raise _refusal(self.principal, reporter.refusal, "connect")
        if reporter.protocol_hints >= _PROTOCOL_HINTS_TO_REFUSE:
            raise BusRefused(
                f"Kafka broker at {self.bootstrap} refused principal {self.principal!r}: it "
                "closes every connection during the handshake, so it expects another "
                "security.protocol (SASL_SSL with credentials? pass them with --bus-option)"
            )

    def _create(self, partitions: dict[str, int], timeout: float = 30.0) -> None:
        """Create topics (name -> partitions, -1 for the broker's default) that do not exist.

        A principal without the right to create topics (a secured broker, where the admin
        creates them) is no error: the topic is left alone, and reading or writing it says
        clearly later if it is missing or out of bounds.
        """
        if not partitions:
            return
        futures = self._admin_client().create_topics(
            [NewTopic(name, count, -1) for name, count in partitions.items()],
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                code = exc.args[0].code()
                if code in _AUTHORIZATION:
                    log.debug(
                        "principal %r may not create topic %s: left to the admin",
                        self.principal,
                        name,
                    )
                elif code != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise _raise_from(exc, f"cannot create topic {name!r}") from exc
            else:
                log.info("created Kafka topic %s (partitions: %d)", name, partitions[name])

    def _create_missing(self, topics: list[str], partitions: dict[str, int] | None = None) -> None:
        """Create the topics of ``topics`` that do not exist yet (``partitions`` each, or the
        broker's default): those a consumer is about to read, so ``consumer()`` works as the
        memory bus's does, or those of ``ensure_topics``.

        Only missing topics are created: a principal that may not create topics still gets
        through when they exist.
        """
        try:
            existing = self._admin_client().list_topics(timeout=10).topics
        except KafkaException as exc:
            raise _raise_from(exc, "cannot read the topic list") from exc
        partitions = partitions or {}
        self._create({t: partitions.get(t, -1) for t in topics if t not in existing})


class _ErrorReporter:
    """librdkafka's client-wide errors (error_cb) and log lines (logger).

    Errors are mostly a broker going away and coming back: logged, not raised, since librdkafka
    retries them; the same error is logged at most once per ``mute`` seconds. A refused login is
    remembered (``refusal``) for whoever waits on the connection, as are librdkafka's hints
    that the broker expects another ``security.protocol`` (``protocol_hints``). Log lines below
    critical are dropped: librdkafka logs every failed reconnect.
    """

    def __init__(self, bootstrap: str, mute: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.mute = mute
        self._last: dict[int, float] = {}
        self.refusal: KafkaError | None = None
        self.protocol_hints = 0

    def log(self, level: int, msg: str, *args: object) -> None:
        """The ``logger`` interface librdkafka calls (``logging.Logger.log``'s signature)."""
        if level >= logging.CRITICAL and "FATAL" not in args:
            # A FATAL line's error also reaches whoever polls or commits, raised with a clearer
            # message (a fenced group member), or error_cb below: logged once, there.
            _librdkafka_log.log(level, msg, *args)
        elif any(_PROTOCOL_HINT.search(str(arg)) for arg in (msg, *args)):
            self.protocol_hints += 1

    def __call__(self, error: KafkaError) -> None:
        if error.code() in _AUTHENTICATION:
            self.refusal = error  # raised, as BusRefused, by whoever waits for the broker
            log.debug("Kafka client error %s", _describe(error))
            return
        if error.fatal():
            log.error("Kafka client fatal error %s", _describe(error))
            return
        now = time.monotonic()
        if now - self._last.get(error.code(), -self.mute) < self.mute:
            return
        self._last[error.code()] = now
        if error.code() in _TRANSIENT:
            log.warning(
                "Kafka broker at %s: %s (librdkafka keeps retrying; repeats muted for %gs)",
                self.bootstrap,
                _describe(error),
                self.mute,
            )
        else:
            log.warning("Kafka client error %s", _describe(error))


class _KafkaProducer(Producer):
    def __init__(self, config: dict[str, Any], principal: str) -> None:
        self._principal = principal
        self._failed = 0
        self._first_failure = ""
        self._refused: BusRefused | None = None
        self._fenced = False  # a newer producer of its transactional id took over
        try:
            self._config = config | {"on_delivery": self._on_delivery}
            self._producer = confluent_kafka.Producer(self._config)
        except KafkaException as exc:
            raise _raise_from(exc, "cannot create a Kafka producer") from exc
        self._since_poll = 0

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failed += 1
            if not self._first_failure:
                self._first_failure = f"{message.topic()}: {_describe(error)}"
            if self._refused is None and _refused(error):
                what = f"write topic {message.topic()!r}"
                self._refused = _refusal(self._principal, error, what)
            self._fenced = self._fenced or error.code() in _FENCED

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key)
                break
            except BufferError:
                # The local queue is full: let librdkafka send, and serve delivery reports.
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise _raise_from(exc, f"cannot produce to {topic!r}") from exc
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            self._producer.poll(0)

    def produce_many(
        self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None]
    ) -> None:
        if len(values) != len(keys):  # checked first: nothing half-sent
            raise ValueError(f"{len(values)} values but {len(keys)} keys")
        produce = self._producer.produce
        done = 0
        try:
            for value, key in zip(values, keys, strict=True):
                produce(topic, value, key)
                done += 1
        except BufferError:
            # The local queue is full: the rest one by one (produce() waits for room).
            for value, key in zip(values[done:], keys[done:], strict=True):
                self.produce(topic, value, key)
            return
        except KafkaException as exc:
            raise _raise_from(exc, f"cannot produce to {topic!r}") from exc
        self._since_poll += done
        if self._since_poll >= 1000:
            self._since_poll = 0
            self._producer.poll(0)  # serve delivery reports (failures only)

    def flush(self, timeout: float | None = None) -> None:
        if timeout is None:  # librdkafka fails every message by then: no wait is open-ended
            timeout = _MESSAGE_TIMEOUT_MS / 1000 + 5
        try:
            pending = self._producer.flush(timeout)
        except KafkaException as exc:
            raise _raise_from(exc, "flush failed", DeliveryError) from exc
        failed, first, refused = self._failed, self._first_failure, self._refused
        self._failed, self._first_failure, self._refused = 0, "", None
        if refused is not None:
            raise refused
        if self._fenced:
            raise BusFenced(
                f"{failed} message(s) not delivered: a newer producer took over; {first}"
            )
        if failed:
            raise DeliveryError(f"{failed} message(s) not delivered; first: {first}")
        if pending:
            raise DeliveryError(f"{pending} message(s) not acknowledged within {timeout:g} s")


class _KafkaTransactionalProducer(_KafkaProducer, TransactionalProducer):
    """One transaction at a time: ``begin``, ``produce``..., then ``commit_with`` or ``abort``.

    A transactional call that fails is not retried: retried after timing out during a broker
    outage, librdkafka's ``commit_transaction`` and ``send_offsets_to_transaction`` were seen to
    block for good once the broker was back, past their own timeout. Such a call, or one that
    does not return within its timeout and a margin, drops the transaction: the librdkafka
    producer is left behind (destroyed by a daemon thread, where a blocked call may keep it) and
    a new one of the same transactional id takes its place, and :class:`TransactionAborted` says
    so. The new one's ``init_transactions`` fences the old one, and the broker finishes or
    aborts what it left open. After an abort, ``TransactionAborted`` or not, the consumer's
    position is past the dropped transaction's input: close it and open a new one, after
    :meth:`init`, to get that input again (its offsets were not committed).
    """

    def __init__(self, config: dict[str, Any], principal: str) -> None:
        super().__init__(config, principal)
        self._transactional_id = str(config["transactional.id"])
        self._initialised = False
        self._timeout = 30.0

    def init(self) -> None:
        """``init_transactions``: fences any earlier producer of this transactional id and has
        the broker end its open transaction (once; :meth:`begin` does it if not done)."""
        if self._initialised:
            return
        for attempt in range(1, _INIT_ATTEMPTS + 1):
            try:
                self._call("init_transactions", self._timeout)
            except TransactionAborted as exc:
                if attempt == _INIT_ATTEMPTS:
                    raise
                log.warning("%s, retrying", exc)
                time.sleep(0.5)
            else:
                self._initialised = True
                return

    def begin(self) -> None:
        self.init()
        try:
            self._producer.begin_transaction()  # local: no broker involved
        except KafkaException as exc:
            raise _raise_from(exc, "begin_transaction failed") from exc

    def commit_with(self, consumer: Consumer) -> None:
        if not isinstance(consumer, _KafkaConsumer):
            raise TypeError(f"commit_with needs a Kafka consumer, got {type(consumer).__name__}")
        offsets = consumer._pending_offsets()
        if offsets:
            metadata = consumer._consumer.consumer_group_metadata()
            self._call("send_offsets_to_transaction", offsets, metadata, self._timeout)
        self._call("commit_transaction", self._timeout)
        consumer._offsets.clear()

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None and error.code() in _PURGED:
            return  # dropped with its transaction, whose input comes again
        super()._on_delivery(error, message)

    def close(self) -> None:
        if self._fenced:  # nothing of a fenced producer will ever be delivered
            return
        super().close()

    def abort(self) -> None:
        self._call("abort_transaction", self._timeout)

    def _call(self, what: str, *args: object) -> None:
        """The librdkafka producer's ``what``, bounded by its timeout and a margin."""
        bound = self._timeout + _TRANSACTION_MARGIN_S
        exc = _bounded(getattr(self._producer, what), args, bound, f"kafka-{what}")
        if exc is None:
            return
        if isinstance(exc, TimeoutError):
            self._start_over()
            raise TransactionAborted(
                f"Kafka {what} did not return in {bound:g} s: "
                "the transaction is dropped, a new producer takes over"
            )
        if not isinstance(exc, KafkaException):
            raise exc
        error = exc.args[0]
        if error.code() in _FENCED:
            self._fenced = True
            raise BusFenced(
                f"transactional id {self._transactional_id!r} was taken over by a newer "
                f"producer ({what}: {_describe(error)})"
            ) from exc
        if _refused(error):
            raise _refusal(
                self._principal,
                error,
                f"use transactional id {self._transactional_id!r} ({what})",
            ) from exc
        if what == "init_transactions" and error.retriable():
            # Nothing to drop yet, and librdkafka takes the same call again.
            raise TransactionAborted(f"Kafka {what} failed: {_describe(error)}") from exc
        if error.fatal() or error.retriable() or error.txn_requires_abort():
            self._start_over()
            raise TransactionAborted(
                f"Kafka {what} failed ({_describe(error)}): the transaction is dropped, "
                "a new producer takes over"
            ) from exc
        raise _raise_from(exc, f"{what} failed") from exc

    def _start_over(self) -> None:
        """Leave this librdkafka producer behind and make a new one of the same transactional
        id, to be initialised (:meth:`init`)."""
        left = [self._producer]
        self._producer = confluent_kafka.Producer(self._config)
        self._initialised = False
        self._failed, self._first_failure, self._since_poll = 0, "", 0
        # Its last reference dropped there: librdkafka's destroy may wait on the broker.
        threading.Thread(target=left.clear, name="kafka-producer-left", daemon=True).start()


def _bounded(
    call: Callable[..., object], args: tuple[object, ...], seconds: float, name: str
) -> BaseException | None:
    """``call(*args)`` in a daemon thread: None, what it raised (without its traceback, whose
    frames would keep the call's objects alive), or a :class:`TimeoutError` if it is still
    running after ``seconds`` (it is then left to run)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call(*args)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc.with_traceback(None))
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else TimeoutError(name)


def _close_aside(consumer: confluent_kafka.Consumer, wait_s: float = 5.0) -> None:
    """Close a fenced consumer without waiting on it for long: librdkafka never starts closing
    a consumer with a fatal error, and the client's close() then waits for ever (the same hang
    confluent-kafka-go fixed in its #1588). Its replacement takes over either way; a close
    still waiting after ``wait_s`` is left to a daemon thread."""

    def close() -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.close()

    closer = threading.Thread(target=close, name="fenced-consumer-close", daemon=True)
    closer.start()
    closer.join(wait_s)
    if closer.is_alive():
        log.warning("the fenced Kafka consumer did not close in %g s: left behind", wait_s)


class _Rejoined(Exception):
    """A consumer replaced its own fenced session: what it polled but did not commit is dropped."""


class _KafkaConsumer(Consumer):
    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        group: str | None,
        principal: str,
        replay: int = 0,
        *,
        instance_id: str | None = None,
        holder: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self._group = group
        self._group_id = str(config.get("group.id", ""))
        self._instance_id = instance_id
        self._holder = holder
        self._config = config
        self._topics = list(topics)
        self._principal = principal
        self._closed = False
        # (topic, partition) -> offset after the last message poll() returned, not committed yet.
        self._offsets: dict[tuple[str, int], int] = {}
        self._start(replay)

    def _start(self, replay: int = 0) -> None:
        """A librdkafka consumer on ``self._config``: joined to the group, or assigned every
        partition ``replay`` messages before its end (a broadcast consumer)."""
        try:
            self._consumer = confluent_kafka.Consumer(self._config)
        except KafkaException as exc:
            raise _raise_from(exc, "cannot create a Kafka consumer") from exc
        try:
            if self._group is None:
                self._assign_at_end(self._topics, replay)
            else:
                self._consumer.subscribe(self._topics, on_revoke=self._on_revoke)
        except BaseException as exc:
            self._consumer.close()
            if isinstance(exc, KafkaException):
                what = f"cannot start a Kafka consumer of {self._topics}"
                raise _raise_from(exc, what) from exc
            raise

    def _assign_at_end(self, topics: list[str], replay: int = 0, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        assignment: list[TopicPartition] = []
        for topic in topics:
            while True:  # a topic just created may take a moment to show its partitions
                metadata = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
                if metadata is not None and metadata.error is None and metadata.partitions:
                    break
                if metadata is not None and _refused(metadata.error):
                    raise _refusal(self._principal, metadata.error, f"read topic {topic!r}")
                if time.monotonic() > deadline:
                    raise BusError(f"topic {topic!r} has no partitions the consumer can see")
                time.sleep(0.1)
            for partition in sorted(metadata.partitions):
                low, high = self._watermarks(TopicPartition(topic, partition), deadline)
                assignment.append(TopicPartition(topic, partition, max(low, high - replay)))
        self._consumer.assign(assignment)

    def _watermarks(self, tp: TopicPartition, deadline: float) -> tuple[int, int]:
        while True:  # a just-created partition may not have its leader yet
            try:
                return self._consumer.get_watermark_offsets(tp, timeout=10)
            except KafkaException as exc:
                error = exc.args[0]
                transient = error.retriable() or error.code() in _TRANSIENT
                if not transient or time.monotonic() > deadline:
                    raise _raise_from(exc, f"end offset of {tp.topic}[{tp.partition}]") from exc
                time.sleep(0.1)

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        # Not committed: the new owner gets these messages again (at-least-once).
        for tp in partitions:
            self._offsets.pop((tp.topic, tp.partition), None)

    def poll(self, max_messages: int = 1, timeout: float = 1.0) -> list[Message]:
        if self._closed:
            return []
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        try:
            return self._poll(max_messages, timeout)
        except _Rejoined:
            return []

    def _poll(self, max_messages: int, timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        while True:
            batch = self._convert(self._consumer.consume(max_messages, 0))
            if batch:
                return batch
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Wait for the first message only, then take whatever else is already fetched.
            first = self._consumer.poll(remaining)
            if first is None:
                return []
            batch = self._convert([first])
            if batch:
                if max_messages > 1:
                    batch += self._convert(self._consumer.consume(max_messages - 1, 0))
                return batch

    def _convert(self, raw: list[Any]) -> list[Message]:
        batch: list[Message] = []
        for m in raw:
            error = m.error()
            if error is not None:
                self._handle_error(error, m.topic())
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            kind, millis = m.timestamp()
            stamp = millis / 1000 if kind != TIMESTAMP_NOT_AVAILABLE else 0.0
            batch.append(Message(topic, m.value() or b"", m.key(), partition, offset, stamp))
            self._offsets[(topic, partition)] = offset + 1
        return batch

    def _handle_error(self, error: KafkaError, topic: str | None = None) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
            raise _refusal(self._principal, error, f"use consumer group {self._group_id!r}")
        if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            topics = repr(topic) if topic else " or ".join(map(repr, self._topics))
            raise _refusal(self._principal, error, f"read topic {topics}")
        if _refused(error):
            raise _refusal(self._principal, error, "read")
        if self._fenced(error):
            self._rejoin_unless_twin(error)
        if error.fatal() or code in _FATAL_FOR_CONSUMER:
            raise BusError(f"Kafka consumer error {_describe(error)}")
        log.warning("Kafka consumer: %s", _describe(error))

    def _fenced(self, error: KafkaError) -> bool:
        """Whether another member joined under this one's instance id. librdkafka reports it as
        a fatal error (code _FATAL) whose text names the broker's FENCED_INSTANCE_ID."""
        if error.code() == KafkaError.FENCED_INSTANCE_ID:
            return True
        fatal = error.code() == KafkaError._FATAL or error.fatal()
        return fatal and bool(self._instance_id) and "group.instance.id" in error.str()

    def _rejoin_unless_twin(self, error: KafkaError) -> None:
        """Raise :class:`BusFenced` if another live member holds this one's instance id; else
        (this member's own rejoin fenced its old session) start a new consumer in its place and
        raise :class:`_Rejoined`. Offsets not committed yet are delivered again (at-least-once)."""
        if self._twin_holds_my_id():
            raise self._fencing(error)
        log.warning(
            "Kafka consumer of group %r: this member's session lapsed (%s); rejoining as %r, "
            "uncommitted messages will be delivered again",
            self._group_id,
            _describe(error),
            self._instance_id,
        )
        _close_aside(self._consumer)
        self._offsets.clear()
        self._start()
        raise _Rejoined

    def _twin_holds_my_id(self, looks: int = 3, apart_s: float = 1.0) -> bool:
        """Whether the group shows another member id than this consumer's under its instance id,
        at each of a few looks: librdkafka's own rejoin may be moving this consumer to a new
        member id meanwhile. A group that cannot be described (a broker still starting) shows no
        twin: a wrong rejoin costs a few messages delivered again; a wrong stop, the service."""
        for look in range(looks):
            if look:
                time.sleep(apart_s)
            holder = self._holder(self._group_id, self._instance_id or "") if self._holder else ""
            try:
                own = self._consumer.memberid() or ""  # "" once librdkafka gave up the session
            except RuntimeError:
                own = ""
            if not (holder and own) or holder == own:
                return False
        return True

    def _fencing(self, error: KafkaError) -> BusFenced:
        return BusFenced(
            f"another member of consumer group {self._group_id!r} joined as "
            f"group.instance.id {self._instance_id!r}, and Kafka fenced this one "
            "(FENCED_INSTANCE_ID)"
        )

    def assigned(self) -> bool:
        if self._closed:
            return False
        try:
            return bool(self._consumer.assignment())
        except (KafkaException, RuntimeError):
            return False

    def lag(self) -> dict[tuple[str, int], int]:
        """From the client's cached high watermarks (updated by every fetch response) and its
        positions: no network call, so the loop may ask once a second."""
        if self._closed:
            return {}
        try:
            partitions = self._consumer.position(self._consumer.assignment())
        except (KafkaException, RuntimeError):
            return {}
        lags: dict[tuple[str, int], int] = {}
        for tp in partitions:
            try:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except (KafkaException, RuntimeError):
                continue
            if high < 0 or tp.offset < 0:
                continue  # nothing fetched from this partition yet: unknown
            lags[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return lags

    def _pending_offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]

    def commit(self) -> None:
        if self._group is None or not self._offsets or self._closed:
            self._offsets.clear()
            return
        offsets = self._pending_offsets()
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
                break
            except KafkaException as exc:
                error = exc.args[0]
                if self._fenced(error):
                    try:
                        self._rejoin_unless_twin(error)
                    except _Rejoined:
                        return
                if error.code() in _REBALANCING:
                    log.warning(
                        "Kafka offset commit refused during a rebalance (%s): "
                        "those messages will be delivered again",
                        _describe(error),
                    )
                    break
                if not (error.retriable() or error.code() in _TRANSIENT):
                    raise _raise_from(exc, "offset commit failed") from exc
                if attempt + 1 == _COMMIT_ATTEMPTS:
                    # Nothing is lost by waiting: the offsets stay pending and go with the next
                    # commit (a later offset covers the earlier ones of its partition).
                    log.warning(
                        "Kafka offset commit still failing (%s): kept for the next commit",
                        _describe(error),
                    )
                    return
                # A restarted broker moves the group coordinator: ask again shortly.
                time.sleep(0.2 * 2**attempt)
        self._offsets.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._offsets.clear()
        try:
            self._consumer.close()  # leaves the group; commits nothing (auto-commit is off)
        except (KafkaException, RuntimeError) as exc:
            log.warning("Kafka consumer close: %s", exc)

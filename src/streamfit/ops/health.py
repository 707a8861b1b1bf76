"""Liveness, readiness and the ``/metrics`` endpoint of a service.

Each long-running service (predictor, recorder, trainer, monitor) holds a :class:`Health` its
loop updates: :meth:`Health.beat` once per turn of the loop, :meth:`Health.set_ready` when it can
do its job (a predictor: a model loaded and partitions assigned), :meth:`Health.stopping` as soon
as it is asked to stop (so ``/readyz`` turns 503 before the last batch is done) and
:meth:`Health.finished` when the loop has returned.

A :class:`ProbeServer` answers over HTTP (stdlib, one daemon thread; nothing process-wide):

* ``GET /metrics``: the Prometheus text format of the services' registries, plus this process's
  ``process_*`` and ``python_*`` metrics;
* ``GET /healthz``: 200 while every service's loop is alive (started, not finished, and it turned
  within its ``stall_s``), else 503;
* ``GET /readyz``: 200 while every service is ready, 503 before that and from the moment it is
  asked to stop.

The two probes answer a small JSON object per service, e.g. ``{"predictor": "ready"}``. One
server may serve several services: the demo process serves all four on one port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector

from ..bus import BusFenced
from .instance import taken_over
from .metrics import ServiceMetrics

log = logging.getLogger("streamfit.ops.health")


class Health:
    """Whether one service loop is alive and ready; thread-safe (one lock, rarely taken).

    ``stall_s``: a loop that has not turned for this long counts as dead (stuck), so an
    orchestrator restarts it. A service whose loop legitimately blocks for longer (a training
    round) beats from inside that work or sets a larger bound.

    >>> health = Health(stall_s=60)
    >>> health.alive, health.ready
    (False, False)
    >>> health.beat(); health.set_ready(True)
    >>> health.alive, health.ready
    (True, True)
    >>> health.stopping(); health.set_ready(True)  # no way back once stopping
    >>> health.alive, health.ready, health.state
    (True, False, 'stopping')
    """

    def __init__(self, metrics: ServiceMetrics | None = None, *, stall_s: float = 60.0) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.metrics = metrics
        self.stall_s = stall_s
        self._lock = threading.Lock()
        self._last_beat: float | None = None  # monotonic time of the loop's last turn
        self._ready = False
        self._stopping = False
        self._finished = False

    def starting(self) -> None:
        """The loop (re)starts: alive, not ready yet, not stopping."""
        self._stopping = self._finished = False
        self.beat()

    def beat(self) -> None:
        """The loop turned (one float assignment: cheap enough for every turn)."""
        self._last_beat = time.monotonic()

    def set_ready(self, ready: bool) -> None:
        with self._lock:
            ready = ready and not self._stopping and not self._finished
            if ready == self._ready:
                return
            self._ready = ready
        if self.metrics is not None:  # a stop() meanwhile wins: read the flags again
            self.metrics.ready.set(int(self._ready and not self._stopping))
        log.debug("%s", "ready" if ready else "not ready")

    def stopping(self) -> None:
        """Asked to stop: not ready from now on (safe from a signal handler: no lock held by
        the interrupted code is needed, the flags are plain assignments)."""
        self._stopping = True
        self._ready = False
        if self.metrics is not None:
            self.metrics.ready.set(0)

    def finished(self) -> None:
        """The loop has returned."""
        self._finished = True
        self.stopping()

    @property
    def alive(self) -> bool:
        beat = self._last_beat
        return beat is not None and not self._finished and time.monotonic() - beat < self.stall_s

    @property
    def ready(self) -> bool:
        return self._ready and not self._stopping and self.alive

    @property
    def state(self) -> str:
        if self._finished:
            return "finished"
        if self._stopping:
            return "stopping"
        if not self.alive:
            return "starting" if self._last_beat is None else "stalled"
        return "ready" if self._ready else "not ready"


class Service(Protocol):
    """What a :class:`ProbeServer` needs of a service."""

    metrics: ServiceMetrics
    health: Health


class ServiceLoop:
    """A long-running service's loop and its probes: :meth:`run` marks it started and finished
    around :meth:`_run`, which loops while ``running``; :meth:`stop` turns ``/readyz`` 503 and
    asks the loop to finish its work and return (safe from a signal handler), cutting short any
    :meth:`pause` under way. A group member fenced by another under its id stops with the one
    line of :func:`~.instance.taken_over`."""

    health: Health
    running: bool = False
    service = "service"  # its name, in that line
    stable_id: str | None = None  # its group member id, once it holds its slot (instance.py)

    def __init__(self) -> None:
        self._stopped = threading.Event()  # set by stop(): a pause() under way ends

    def stop(self) -> None:
        self.health.stopping()
        self.running = False
        self._stopped.set()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (a backoff), or less if :meth:`stop` is called meanwhile; whether
        the service is still running."""
        return not self._stopped.wait(seconds) and self.running

    def run(self) -> None:
        self.running = True
        self._stopped.clear()
        self.health.starting()
        try:
            self._run()
        except BusFenced as exc:
            raise BusFenced(taken_over(self.service, self.stable_id, exc)) from exc
        finally:
            self.health.finished()

    def _run(self) -> None:
        raise NotImplementedError


class _Union(Collector):
    """The samples of several registries as one collector (each name belongs to one service)."""

    def __init__(self, registries: list[CollectorRegistry]) -> None:
        self.registries = registries

    def collect(self) -> Iterator:
        for registry in self.registries:
            yield from registry.collect()


class ProbeServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of ``services`` (name -> service) on
    ``host:port`` (``port=0``: any free port, see :attr:`port`). A context manager."""

    def __init__(self, services: Mapping[str, Service], port: int, host: str = "0.0.0.0") -> None:
        if not services:
            raise ValueError("a probe server needs at least one service")
        self.services = dict(services)
        self.registry = CollectorRegistry(auto_describe=True)
        # This process's own metrics, in this server's registry (never the global one).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(_Union([s.metrics.registry for s in self.services.values()]))
        self._requested = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the probe server is not started")
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        """Bind and serve in a daemon thread; OSError if the port is taken."""
        self._server = ThreadingHTTPServer(self._requested, self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="probe-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ProbeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def probe(self, path: str) -> tuple[int, bytes, str]:
        """(status, body, content type) of one GET: the handler's answer, also for tests."""
        if path == "/metrics":
            return HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if path in ("/healthz", "/readyz"):
            check = "alive" if path == "/healthz" else "ready"
            good = all(getattr(s.health, check) for s in self.services.values())
            body = {name: s.health.state for name, s in self.services.items()}
            status = HTTPStatus.OK if good else HTTPStatus.SERVICE_UNAVAILABLE
            return status, json.dumps(body).encode() + b"\n", "application/json"
        return HTTPStatus.NOT_FOUND, b"not found: try /metrics, /healthz or /readyz\n", "text/plain"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                status, body, content_type = server.probe(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # one line per scrape would drown the service's own log

        return Handler


@contextlib.contextmanager
def serving_probes(
    services: Mapping[str, Service], port: int, host: str = "0.0.0.0"
) -> Iterator[ProbeServer | None]:
    """A :class:`ProbeServer` for the duration of the block; ``port=0`` turns it off (None).
    A taken port is logged as a warning and the service runs without probes: serving matters
    more than its metrics, and a second service on one host must be given another port."""
    if port == 0:
        yield None
        return
    names = ", ".join(services)
    try:
        server = ProbeServer(services, port, host).start()
    except OSError as exc:
        log.warning(
            "no /metrics, /healthz or /readyz for %s: cannot listen on %s:%d (%s); "
            "give it a free port with --metrics-port (0: off)",
            names,
            host,
            port,
            exc.strerror or exc,
        )
        yield None
        return
    log.info("%s: /metrics, /healthz and /readyz on http://%s:%d", names, host, server.port)
    try:
        yield server
    finally:
        server.stop()


__all__ = ["Health", "ProbeServer", "Service", "serving_probes"]

"""Faults other than a kill: the broker restarting during a promotion, a full disk under the
predictor's model cache and under the recorder's store, PostgreSQL restarted under the
recorder, a bundle truncated after it was registered, the tracking server unreachable during a
round, and a model event from 2100."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from streamfit import messages
from streamfit.models.promotion import promote
from streamfit.models.registry import ModelRegistry
from streamfit.stores import ObservationStore
from streamfit.stores.observations import observations_table
from tests.chaos.conftest import lenient_env, restart_own_broker, start_app
from tests.harness import champion, free_port, wait_until
from tests.kafka.conftest import copy_of_champion
from tests.serving.conftest import Registered, train_bundle

pytestmark = pytest.mark.kafka


# -- the broker restarts during a promotion (the suite's own broker) -----------------------------
def test_broker_restart_during_a_promotion(deployment_on_own_broker, chaos_report):
    deployment = deployment_on_own_broker
    predictor = deployment.start("predictor")
    deployment.wait_for_log(predictor, "predictor consuming")
    copy = copy_of_champion(deployment.settings)
    app, summary_path = start_app(deployment, "app", "--count", "1500", "--rate", "150")
    deployment.wait_for_log(app, "sent ")
    promoting = deployment.start("promote", str(copy), name="promote")
    time.sleep(1.0)  # the CLI is starting: it moves the alias, then announces
    started = time.monotonic()
    restart_own_broker()
    assert promoting.wait(timeout=300) == 0, deployment.log(promoting)
    deployment.wait_for_log(predictor, f"now serving model v{copy}", timeout=300)
    recovery = time.monotonic() - started
    summary = deployment.app_summary(app, summary_path, timeout=400)
    chaos_report.add(
        "broker restart during a promotion",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=summary["duplicates"],
        recovery_s=recovery,
    )
    assert summary["sent"] == 1500 and summary["lost"] == 0
    assert champion(deployment) == copy
    assert predictor.poll() is None  # it rode the restart out


# -- disk full ----------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (the suite runs as root), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 65536, 4096, 1):  # unbuffered: nothing left to flush at close
            with contextlib.suppress(OSError):
                while True:
                    os.write(handle, b"\0" * size)
    finally:
        os.close(handle)
    return filler


def test_a_full_disk_under_the_model_cache(deployment, chaos_report):
    """The model cache's disk fills up while the first model compiles: the compiler gives up
    and LightGBM keeps serving; a new model is refused with the reason, the old one keeps
    serving; once there is room the next promotion is served, compiled. A predictor that cannot
    fit even its first model exits with one clear line and code 2."""
    with tmpfs(deployment.root / "predictor-data", "32m") as data_dir:
        # The compiled models where a predictor keeps them by default: on the same full disk
        # (the other tests share one cache: docs/reference/test-overrides.md).
        env = {**os.environ, "STREAMFIT_COMPILED_CACHE": str(data_dir / "compiled-models")}
        predictor = deployment.start("predictor", "--data-dir", str(data_dir), env=env)
        deployment.wait_for_log(predictor, "now serving model v1")
        filler = fill(data_dir)  # the compiler is still building (seconds): it meets the full disk
        deployment.wait_for_log(predictor, "model v1 stays on LightGBM")
        deployment.wait_for_log(predictor, "predictor consuming")
        copy = copy_of_champion(deployment.settings)
        promote(deployment.settings, copy, reason="disk full")
        deployment.wait_for_log(predictor, f"refused model v{copy}")
        assert "No space left on device" in deployment.log(predictor)
        summary = deployment.run_app("--count", "200", "--rate", "200")
        assert summary["lost"] == 0 and set(summary["model_versions"]) == {"1"}

        # a predictor whose disk cannot hold its first model says so and exits
        with tmpfs(deployment.root / "tiny", "16k") as tiny:
            starved = deployment.start("predictor", "--data-dir", str(tiny), name="starved")
            assert starved.wait(timeout=180) == 2
            last = deployment.log(starved).strip().splitlines()[-1]
            assert "error:" in last and "No space left on device" in last, last

        filler.unlink()
        freed = time.monotonic()
        promote(deployment.settings, 1, reason="room again")
        promote(deployment.settings, copy, reason="room again")
        deployment.wait_for_log(predictor, f"now serving model v{copy}")
        recovery = time.monotonic() - freed
        deployment.wait_for_log(predictor, f"model v{copy} compiled by")
        after = deployment.run_app("--count", "100", "--rate", "200")
        assert after["lost"] == 0 and set(after["model_versions"]) == {str(copy)}
        assert predictor.poll() is None
        deployment.stop_all()
    chaos_report.add(
        "disk full: predictor's model cache",
        requests=summary["sent"] + after["sent"],
        lost=summary["lost"] + after["lost"],
        duplicates=summary["duplicates"] + after["duplicates"],
        recovery_s=recovery,
    )


def test_a_full_disk_under_the_recorders_store(deployment, chaos_report):
    """The observation store's disk fills up: the recorder waits (backoff), dead-letters
    nothing and loses nothing; once there is room every observation is recorded."""
    bus = deployment.bus()
    letters = bus.consumer([deployment.topics.dead_letter], group=None)
    letters.poll(1, timeout=1)
    with tmpfs(deployment.root / "recorder-data", "4m") as data_dir:
        url = f"sqlite:///{data_dir / 'observations.db'}"
        predictor = deployment.start("predictor")
        recorder = deployment.start("recorder", "--store", url)
        deployment.wait_for_log(predictor, "predictor consuming")
        deployment.wait_for_log(recorder, "recorder consuming")
        filler = fill(data_dir)
        summary = deployment.run_app("--count", "300", "--rate", "300", "--label-delay", "0.2")
        assert summary["lost"] == 0
        deployment.wait_for_log(recorder, "observation store unavailable")
        assert recorder.poll() is None
        filler.unlink()
        freed = time.monotonic()
        store = ObservationStore(url)
        try:
            wait_until(lambda: store.count(labelled=True) == 300, 180, "every observation")
            recovery = time.monotonic() - freed
            recorded = store.count()
        finally:
            store.close()
        deployment.stop_all()
    dead = [orjson.loads(m.value) for m in letters.poll(1000, timeout=2)]
    letters.close()
    bus.close()
    chaos_report.add(
        "disk full: recorder's observation store",
        requests=summary["sent"],
        lost=summary["sent"] - recorded,
        duplicates=0,
        recovery_s=recovery,
    )
    assert recorded == 300
    assert [d for d in dead if d.get("service") == "recorder"] == []


# -- PostgreSQL restarted mid-stream (a server of the test's own) ------------------------------
@pytest.mark.postgres
def test_postgres_restarted_under_the_recorder(deployment, own_postgres, chaos_report):
    """PostgreSQL stopped (fast shutdown: the open transaction rolls back, connections are cut)
    while requests and late labels keep coming, down for a few seconds, started again: the
    recorder says the store is unavailable, waits, resumes, and the store ends with every
    request once. Recovery is clocked from the server answering again to the first request the
    recorder recorded after it."""
    count = 2000
    store = ObservationStore(own_postgres.url)
    engine = sa.create_engine(own_postgres.url)
    ids = sa.select(sa.func.count(), sa.func.count(sa.distinct(observations_table.c.request_id)))
    predictor = deployment.start("predictor")
    recorder = deployment.start("recorder", "--store", own_postgres.url)
    deployment.wait_for_log(predictor, "predictor consuming")
    deployment.wait_for_log(recorder, "recorder consuming")
    app, summary_path = start_app(
        deployment, "app", "--count", str(count), "--rate", "200", "--label-delay", "0.5"
    )
    wait_until(lambda: store.count() >= 300, 120, "300 recorded")
    store.close()  # its pooled connections die with the server
    own_postgres.down()
    deployment.wait_for_log(recorder, "observation store unavailable")
    time.sleep(5.0)  # requests keep coming while the store is down
    own_postgres.up()
    back = time.monotonic()
    before = store.count()  # what was recorded before the server stopped
    wait_until(lambda: store.count() > before, 120, "a request recorded after the restart")
    recovery = time.monotonic() - back
    summary = deployment.app_summary(app, summary_path, timeout=400)
    try:
        wait_until(lambda: store.count(labelled=True) == count, 180, "every labelled observation")
        recorded, labelled = store.count(), store.count(labelled=True)
        with engine.connect() as db:
            rows, distinct = db.execute(ids.where(observations_table.c.data.is_not(None))).one()
    finally:
        store.close()
        engine.dispose()
    chaos_report.add(
        "PostgreSQL restarted under the recorder",
        requests=summary["sent"],
        lost=summary["sent"] - distinct,
        duplicates=rows - distinct,
        recovery_s=recovery,
    )
    assert summary["sent"] == count and summary["lost"] == 0
    assert recorded == labelled == rows == distinct == count
    assert recorder.poll() is None  # it waited and resumed


@pytest.mark.postgres
def test_a_recorder_started_before_postgresql_waits_for_it(deployment, own_postgres):
    """The database is down when the recorder starts (a host booting, services started
    together): the recorder says the store is unavailable and waits, its offsets uncommitted,
    instead of exiting; once the server is up it records every request sent meanwhile."""
    count = 300
    own_postgres.down()
    recorder = deployment.start("recorder", "--store", own_postgres.url)
    deployment.wait_for_log(recorder, "observation store unavailable")
    predictor = deployment.start("predictor")
    deployment.wait_for_log(predictor, "predictor consuming")
    app, summary_path = start_app(deployment, "app", "--count", str(count), "--rate", "200")
    summary = deployment.app_summary(app, summary_path, timeout=400)
    assert summary["answered"] == count and recorder.poll() is None
    own_postgres.up()
    deployment.wait_for_log(recorder, "recorder consuming")
    store = ObservationStore(own_postgres.url)
    try:
        wait_until(lambda: store.count() == count, 120, "every request recorded")
    finally:
        store.close()
    assert recorder.poll() is None


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("service", "ready"),
    [
        ("trainer", "trainer waiting for retrain commands"),
        ("monitor", "monitor: checking"),
    ],
)
def test_a_service_started_before_postgresql_waits_for_it(deployment, own_postgres, service, ready):
    """Services started together, the database last: the trainer and the monitor wait for
    their store, as the recorder does, instead of exiting, and start once the server is up."""
    own_postgres.down()
    args = ("--no-tracking",) if service == "monitor" else ()
    process = deployment.start(service, "--store", own_postgres.url, *args)
    deployment.wait_for_log(process, "store unavailable", timeout=120)
    time.sleep(3.0)
    assert process.poll() is None, deployment.log(process)[-3000:]
    own_postgres.up()
    deployment.wait_for_log(process, ready, timeout=180)
    assert process.poll() is None


@pytest.mark.postgres
def test_a_recorder_the_database_refuses_exits_with_the_reason(deployment, postgres_url):
    """A wrong password is not a server still starting: one line with the server's reason, exit
    2, no waiting."""
    wrong = sa.engine.make_url(postgres_url).set(password="not-the-password")
    url = wrong.render_as_string(hide_password=False)
    recorder = deployment.start("recorder", "--store", url)
    wait_until(lambda: recorder.poll() is not None, 60, "the recorder to exit")
    log = deployment.log(recorder)
    assert recorder.returncode == 2
    assert "password authentication failed" in log and "Traceback" not in log
    assert "observation store unavailable" not in log


# -- a bundle truncated after registration ------------------------------------------------------
def test_a_truncated_bundle_is_never_served(deployment, mlflow_server, chaos_report):
    predictor = deployment.start("predictor")
    deployment.wait_for_log(predictor, "predictor consuming")
    registered = Registered(deployment.settings, mlflow_server)
    bad = registered.save(train_bundle(rounds=5))
    target = registered.artifact_file(bad)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # half-written, where the tracking server keeps it
    app, summary_path = start_app(deployment, "app", "--count", "600", "--rate", "200")
    deployment.wait_for_log(app, "sent ")
    promote(deployment.settings, bad, reason="truncated after registration")
    deployment.wait_for_log(predictor, f"refused model v{bad} (hash mismatch), still serving v1")
    summary = deployment.app_summary(app, summary_path, timeout=400)
    # a predictor started now finds the truncated model as @champion: it refuses and exits
    fresh = deployment.start("predictor", "--data-dir", str(deployment.root / "p2"), name="p2")
    assert fresh.wait(timeout=180) == 2
    assert "hash mismatch" in deployment.log(fresh).strip().splitlines()[-1]
    chaos_report.add(
        "bundle truncated after registration",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=summary["duplicates"],
    )
    assert summary["lost"] == 0 and set(summary["model_versions"]) == {"1"}
    assert predictor.poll() is None


# -- the tracking server unreachable during a round ---------------------------------------------
class Gate:
    """A TCP forwarder to the tracking server that can be shut (connections refused) and opened
    again on the same port: the MLflow store unreachable, without touching the shared server."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.close()
        self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_the_tracking_server_unreachable_during_a_round(deployment, mlflow_server, chaos_report):
    """The round fails cleanly, the champion keeps serving, and the retrain command is kept and
    retried: once the server is back, the round runs and its model is served."""
    gate = Gate(mlflow_server)
    predictor = deployment.start("predictor")
    trainer = deployment.start(
        "trainer", "--max-evals", "2", "--tracking-uri", gate.url, env=lenient_env()
    )
    deployment.wait_for_log(predictor, "predictor consuming")
    deployment.wait_for_log(trainer, "trainer waiting")
    with deployment.bus().producer() as producer:
        producer.produce(deployment.topics.retrain, messages.retrain("chaos", 0))
    deployment.wait_for_log(trainer, "retraining (")
    gate.shut()
    deployment.wait_for_log(trainer, "retraining failed", timeout=300)
    deployment.wait_for_log(trainer, "round retried in")
    summary = deployment.run_app("--count", "200", "--rate", "200")
    assert summary["lost"] == 0 and set(summary["model_versions"]) == {"1"}
    assert champion(deployment) == 1 and trainer.poll() is None
    gate.open()
    reopened = time.monotonic()
    wait_until(lambda: champion(deployment) > 1, 400, "the retried round's champion")
    deployment.wait_for_log(predictor, f"now serving model v{champion(deployment)}")
    recovery = time.monotonic() - reopened
    # The round ends (its MLflow run closes) after the promotion: shut the gate only then.
    deployment.wait_for_log(trainer, "round done")
    gate.shut()
    chaos_report.add(
        "MLflow unreachable during a round",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=summary["duplicates"],
        recovery_s=recovery,
    )
    assert "round done" in deployment.log(trainer)


# -- a model event from 2100 --------------------------------------------------------------------
def test_model_events_and_commands_from_2100_break_nothing(deployment, chaos_report):
    year_2100 = 4102444800.0
    predictor = deployment.start("predictor")
    trainer = deployment.start("trainer", "--max-evals", "1", name="trainer", env=lenient_env())
    deployment.wait_for_log(predictor, "predictor consuming")
    deployment.wait_for_log(trainer, "trainer waiting")
    copy = copy_of_champion(deployment.settings)
    registry = ModelRegistry.from_settings(deployment.settings)
    entry = registry.get(copy)
    registry.make_champion(copy)
    registry.client.set_model_version_tag(
        registry.name, str(copy), "champion_since", "4102444800.0"
    )
    event = {
        "version": copy,
        "event": "promoted",
        "model_uri": entry.model_uri,
        "sha256": entry.sha256,
        "reason": "a promoter whose clock says 2100",
        "promoted_at": year_2100,
        "created": "2100-01-01T00:00:00Z",
        "champion_since": year_2100,
    }
    with deployment.bus().producer() as producer:
        producer.produce(deployment.topics.models, orjson.dumps(event))
    deployment.wait_for_log(predictor, f"now serving model v{copy}")
    command = orjson.loads(messages.retrain("every_n_labelled", 100, 100))
    command["requested_at"] = year_2100
    with deployment.bus().producer() as producer:
        producer.produce(deployment.topics.retrain, orjson.dumps(command))
    wait_until(lambda: champion(deployment) > copy, 300, "a round started by a 2100 command")
    deployment.wait_for_log(predictor, f"now serving model v{champion(deployment)}")
    summary = deployment.run_app("--count", "100", "--rate", "200")
    chaos_report.add(
        "model event / command dated 2100",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=summary["duplicates"],
    )
    assert summary["lost"] == 0
    assert predictor.poll() is None and trainer.poll() is None

"""Several machines, no shared disk (issue 10): every service a `streamfit` process with a data
directory of its own, meeting only through the real broker, PostgreSQL and the MLflow server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamfit.bus import get_bus
from streamfit.config import Settings, Topics
from streamfit.contract import task_of
from streamfit.datasets.adult import CONTRACT
from streamfit.models.registry import ModelRegistry
from streamfit.ops.instance import SLOTS_DIR
from streamfit.stores import ObservationStore
from tests import harness
from tests.harness import wait_until
from tests.kafka.conftest import register_copy

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

REQUESTS = 600
RETRAIN_EVERY = 200
ADULT_RULES = task_of(CONTRACT)  # the app sends each label as Adult has it: ">50K", "<=50K"
SERVICES = ("predictor-1", "predictor-2", "recorder", "trainer-1", "trainer-2", "monitor", "app")


class Machines:
    """One data directory per service (as if each ran on a machine of its own), one shared
    configuration: the broker, the database and the tracking server, and topics of the test's
    own. Each process runs in its own directory, so a relative path lands there too."""

    def __init__(self, root: Path, bootstrap: str, store: str, template: tuple[str, str]) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.machines = root / "machines"
        suffix = uuid.uuid4().hex[:8]
        self.topics = Topics(**{name: f"{name}-{suffix}" for name in vars(Topics())})
        topic_lines = "\n".join(f'{k} = "{v}"' for k, v in vars(self.topics).items())
        # Written by the operator, outside every data directory; no data_dir in it.
        self.config = root / "streamfit.toml"
        self.config.write_text(
            f'bus = "kafka://{bootstrap}"\nstore = "{store}"\n'
            f'tracking_uri = "{template[0]}"\n'
            f'group = "predictors-{suffix}"\ntrainer_group = "trainers-{suffix}"\n'
            f'recorder_group = "recorders-{suffix}"\n'
            f'experiment = "scaleout-{suffix}"\nregistered_model = "scaleout-{suffix}"\n'
            f"[topics]\n{topic_lines}\n"
        )
        self.settings = Settings.load(config_file=self.config, environ={}).replace(
            data_dir=root / "operator"
        )
        register_copy(self.settings, template)  # v1, @champion, on the tracking server
        self.store = ObservationStore(store)
        self.registry = ModelRegistry.from_settings(self.settings)
        self.processes: dict[str, subprocess.Popen] = {}

    def data_dir(self, name: str) -> Path:
        return self.machines / name

    def start(self, name: str, command: str, *args: str, env: dict | None = None) -> None:
        data_dir = self.data_dir(name)
        data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "streamfit.cli", command, "--config", str(self.config)]
            + ["--data-dir", str(data_dir), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def wait_for_log(self, name: str, text: str, timeout: float = 120) -> None:
        wait_until(
            lambda: text in self.log(name),
            timeout,
            f"{name} to log {text!r}",
            every=0.3,
            log=lambda: self.log(name),
            process=self.processes[name],
        )

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def retrain_done(self) -> bool:
        """Every retrain command published so far has had its round (offset committed)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bus.removeprefix("kafka://"),
                "group.id": self.settings.trainer_group,
                "enable.auto.commit": False,
            }
        )
        try:
            partition = TopicPartition(self.topics.retrain, 0)
            _, high = consumer.get_watermark_offsets(partition, timeout=10)
            (committed,) = consumer.committed([partition], timeout=10)
            return high > 0 and committed.offset == high
        finally:
            consumer.close()

    def topic_messages(self, topic: str, count: int) -> list[dict]:
        """The first ``count`` messages of one of the test's topics, read from the beginning."""
        bus = get_bus(self.settings.bus)
        consumer = bus.consumer([topic], group=f"reader-{uuid.uuid4().hex[:8]}")
        got: list[dict] = []
        deadline = time.monotonic() + 60
        try:
            while len(got) < count and time.monotonic() < deadline:
                got += [orjson.loads(m.value) for m in consumer.poll(1000, timeout=1)]
        finally:
            consumer.close()
            bus.close()
        return got

    def files(self) -> Iterator[Path]:
        return (p for p in self.root.rglob("*") if p.is_file())

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.store.close()


@pytest.fixture
def machines(tmp_path, kafka_bootstrap, postgres_schema_url, trained_model) -> Iterator[Machines]:
    machines = Machines(tmp_path, kafka_bootstrap, postgres_schema_url, trained_model)
    topics = machines.topics
    get_bus(machines.settings.bus).ensure_topics(
        {
            **{t: 1 for t in vars(topics).values()},
            topics.requests: 3,
            topics.predictions: 3,
        }
    )
    yield machines
    machines.stop_all()


def test_every_service_on_a_machine_of_its_own(machines):
    m = machines
    # On the defaults: the restarted recorder joins under the killed one's id (same data
    # directory) and takes its partitions at once; the standby trainer gets the killed one's
    # once its session times out (45 s).
    trainer_options = ("--max-evals", "2")
    recorder_options = ("--retrain-every", str(RETRAIN_EVERY))
    lenient = {"STREAMFIT_GATE_TOLERANCE": "10"}  # the model's quality is not the point
    for name in ("predictor-1", "predictor-2"):
        m.start(name, "predictor", "--no-compile-model")
    m.start("recorder", "recorder", *recorder_options)
    for name in ("trainer-1", "trainer-2"):
        m.start(name, "trainer", *trainer_options, env=lenient)
    m.start("monitor", "monitor", "--drift-every", "200", "--drift-window", "400")
    for name in ("predictor-1", "predictor-2"):
        m.wait_for_log(name, "now serving model v1")
        m.wait_for_log(name, "predictor consuming")
    m.wait_for_log("recorder", "recorder consuming")
    for name in ("trainer-1", "trainer-2"):
        m.wait_for_log(name, "trainer waiting")

    m.start(
        "app",
        "app",
        *("--count", str(REQUESTS), "--rate", "30", "--label-delay", "2"),
        *("--summary-json", str(m.root / "app-summary.json"), "--timeout", "120"),
    )

    # SIGKILL the recorder mid-stream, then start it again on its own data directory
    wait_until(lambda: m.store.count() >= 150, 60, "150 recorded observations", every=0.3)
    m.kill("recorder")
    assert m.store.count() < REQUESTS  # killed mid-stream
    m.start("recorder", "recorder", *recorder_options)

    # SIGKILL the working trainer mid-round: the standby takes the command over
    def worker() -> str | None:
        working = [n for n in ("trainer-1", "trainer-2") if "retraining (" in m.log(n)]
        return working[0] if working else None

    wait_until(worker, 120, "a trainer to start a round", every=0.3)
    killed = worker()
    standby = "trainer-2" if killed == "trainer-1" else "trainer-1"
    m.wait_for_log(killed, "trial 1/2")  # mid-round: searching
    m.kill(killed)
    assert "gate:" not in m.log(killed)  # killed before its gate

    assert m.processes["app"].wait(timeout=180) == 0, m.log("app")
    summary = orjson.loads((m.root / "app-summary.json").read_bytes())
    assert summary["sent"] == REQUESTS
    assert summary["answered"] == REQUESTS and summary["lost"] == 0

    # every request, prediction and label is in the store, nothing lost across the kills
    wait_until(
        lambda: m.store.count(labelled=True) == REQUESTS, 60, "every label recorded", every=0.3
    )
    requests = {r["request_id"] for r in m.topic_messages(m.topics.requests, REQUESTS)}
    labels = {r["request_id"]: r["label"] for r in m.topic_messages(m.topics.labels, REQUESTS)}
    assert len(requests) == REQUESTS and set(labels) == requests
    rows = m.store.labelled_frame()
    assert len(rows) == REQUESTS and set(rows["request_id"]) == requests
    assert rows["probability"].between(0, 1).all() and rows["model_version"].notna().all()
    encoded = {request_id: ADULT_RULES.encode_label(label) for request_id, label in labels.items()}
    assert dict(zip(rows["request_id"], rows["label"], strict=True)) == encoded  # 1.0: ">50K"
    assert m.store.count() == REQUESTS and m.store.pending_labels() == 0

    # every retrain threshold was published once and every round has finished
    wait_until(
        lambda: m.store.retrain_mark() == REQUESTS // RETRAIN_EVERY,
        60,
        "the last threshold",
        every=0.3,
    )
    wait_until(lambda: m.store.unsent() == 0, 60, "the retrain commands to be delivered", every=0.3)
    wait_until(m.retrain_done, 300, "the standby trainer to finish every round", every=0.3)
    champion = harness.champion(m)
    assert champion > 1
    assert f"round done: v{champion} promoted" in m.log(standby)
    # the killed round's version, if it registered one, was never champion
    history = {version for _, version, _ in m.registry.champion_history()}
    assert 1 in history and champion in history
    for _, version, _ in m.registry.champion_history():
        assert version == 1 or f"round done: v{version} promoted" in m.log(standby)

    # both predictors fetched the new champion through the tracking server, into their caches
    for name in ("predictor-1", "predictor-2"):
        m.wait_for_log(name, f"now serving model v{champion}", timeout=120)
        cached = m.data_dir(name) / "model-cache" / f"v{champion:06d}"
        assert {p.name for p in cached.iterdir()} >= {
            "model.txt",
            "pipeline.json",
            "manifest.json",
        }
    # the monitor follows the registry too, from its own cache
    m.wait_for_log("monitor", f"champion is now v{champion}", timeout=60)
    assert (m.data_dir("monitor") / "model-cache" / f"v{champion:06d}").is_dir()
    m.stop_all()

    # no shared disk: every file lies under the directory of the service that made it (or is
    # the test's own), and the predictors' directories hold nothing but their model caches and
    # the lock of their group member id (streamfit/instance.py)
    machines_dir = m.root / "machines"
    own = {m.config, m.root / "app-summary.json"}
    for path in m.files():
        if path in own or path.is_relative_to(m.logs):
            continue
        assert path.is_relative_to(machines_dir), f"{path} outside every data directory"
        assert path.relative_to(machines_dir).parts[0] in SERVICES, path
    assert not (m.root / "operator").exists()  # the operator's settings wrote nothing
    for name in ("predictor-1", "predictor-2"):  # the models, their compiled copies, the lock
        held = {p.name for p in m.data_dir(name).iterdir()}
        assert "model-cache" in held, held
        assert held <= {"model-cache", "compiled-models", SLOTS_DIR}, held
    for name in SERVICES:
        # on the tracking server and the database, nothing of MLflow or the trials is local
        made = {p.name for p in m.data_dir(name).rglob("*")}
        assert not made & {"mlflow.db", "trials.db", "observations.db", "mlruns"}, (name, made)

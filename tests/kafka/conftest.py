"""Multi-process tests over the real broker: each service is a `streamfit` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from streamfit.bus import get_bus
from streamfit.config import Settings, Topics
from tests.conftest import REPO, service_up
from tests.harness import wait_until


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, mlflow_server) -> tuple[str, str]:
    """One initial model for the whole session (2 trials: the model's quality is not the point),
    registered on the tracking server; returns (tracking URI, registered model name)."""
    data_dir = tmp_path_factory.mktemp("initial")
    name = f"template-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "streamfit.cli",
            "init",
            "--data-dir",
            str(data_dir),
            "--max-evals",
            "2",
            "--tracking-uri",
            mlflow_server,
            "--experiment",
            name,
        ],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "STREAMFIT_REGISTERED_MODEL": name},
    )
    return mlflow_server, name


def register_copy(settings: Settings, template: tuple[str, str]) -> int:
    """Version 1 of ``settings.registered_model``: the template's champion, same artifacts and
    digest (a registry version is a pointer to them), promoted without an announcement."""
    from streamfit.models.promotion import promote
    from streamfit.models.registry import SHA256_TAG, ModelRegistry

    source = ModelRegistry(*template)
    champion = source.client.get_model_version_by_alias(source.name, "champion")
    target = ModelRegistry.from_settings(settings)
    target.client.create_registered_model(target.name)
    version = target.client.create_model_version(
        target.name,
        champion.source,
        run_id=champion.run_id,
        tags={SHA256_TAG: champion.tags[SHA256_TAG]},
        model_id=champion.source.removeprefix("models:/"),
    )
    promote(settings.replace(bus="memory://"), int(version.version), event="initial")
    return int(version.version)


def copy_of_champion(settings: Settings) -> int:
    """A second registered version with the champion's artifacts and tags, digest included (a
    valid model to switch to)."""
    from streamfit.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    found = registry.client.get_model_version(registry.name, str(registry.champion().version))
    return int(
        registry.client.create_model_version(
            registry.name,
            found.source,
            run_id=found.run_id,
            tags=found.tags,
            model_id=found.source.removeprefix("models:/"),
        ).version
    )


class Deployment:
    """A data dir + config with topic names of its own, and the processes started on it."""

    def __init__(self, root: Path, bootstrap: str, template: tuple[str, str]) -> None:
        # Compiled models are kept by content, in the session's temporary directory: its
        # deployments, all serving the template champion at first, build it once (as the
        # predictors of one machine do).
        compiled_cache = root.parent / "compiled-models"
        self.root = root
        self.data_dir = root / "data"
        suffix = uuid.uuid4().hex[:8]
        self.topics = Topics(**{name: f"{name}-{suffix}" for name in vars(Topics())})
        self.bootstrap = bootstrap
        self.config = root / "streamfit.toml"
        topic_lines = "\n".join(f'{k} = "{v}"' for k, v in vars(self.topics).items())
        self.config.write_text(
            f'data_dir = "{self.data_dir}"\nbus = "kafka://{bootstrap}"\n'
            f'group = "predictors-{suffix}"\ntrainer_group = "trainers-{suffix}"\n'
            f'recorder_group = "recorders-{suffix}"\n'
            f'tracking_uri = "{template[0]}"\n'
            f'experiment = "deployment-{suffix}"\nregistered_model = "deployment-{suffix}"\n'
            f'compiled_cache = "{compiled_cache}"\n'
            f"[topics]\n{topic_lines}\n"
        )
        self.settings = Settings.load(config_file=self.config, environ={})
        register_copy(self.settings, template)
        self.processes: list[subprocess.Popen] = []

    def start(
        self, command: str, *args: str, name: str | None = None, env: dict | None = None
    ) -> subprocess.Popen:
        log = (self.root / f"{name or command}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "streamfit.cli", command, "--config", str(self.config), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**(env or os.environ), "PYTHONUNBUFFERED": "1"},
        )
        process.log_path = log.name  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def run_app(self, *args: str, timeout: float = 300) -> dict:
        summary = self.root / f"app-{uuid.uuid4().hex[:6]}.json"
        app = self.start("app", "--summary-json", str(summary), *args, name="app")
        return self.app_summary(app, summary, timeout=timeout)

    def app_summary(self, app: subprocess.Popen, summary: Path, timeout: float = 300) -> dict:
        """The summary an app wrote once it exits; its log if it wrote none."""
        app.wait(timeout=timeout)
        if not summary.exists():
            raise AssertionError(
                f"app exited {app.returncode} without a summary: {self.log(app)[-3000:]}"
            )
        return json.loads(summary.read_text())

    def log(self, process: subprocess.Popen) -> str:
        return Path(process.log_path).read_text()  # type: ignore[attr-defined]

    def wait_for_log(self, process: subprocess.Popen, text: str, timeout: float = 120) -> None:
        wait_until(
            lambda: text in self.log(process),
            timeout,
            f"{text!r} logged",
            log=lambda: self.log(process),
            process=process,
        )

    def group_members(self, group: str) -> dict[str, int]:
        """member id -> partitions assigned in ``group``, from Kafka's own consumer-groups
        tool (empty while the group has no members)."""
        out = subprocess.run(
            [REPO / "scripts" / "kafka", "tool", "consumer-groups"]
            + ["--bootstrap-server", self.bootstrap, "--describe", "--members", "--group", group],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        rows = (line.split() for line in out.splitlines())
        return {fields[1]: int(fields[-1]) for fields in rows if fields[:1] == [group]}

    def messages_in(self, topic: str) -> int:
        """How many messages ``topic`` holds: the sum of its partitions' end offsets."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "offsets-reader"})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends = (
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions
            )
            return sum(ends)
        finally:
            consumer.close()

    def bus(self):
        return get_bus(self.settings.bus)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def deployment(tmp_path, kafka_bootstrap, trained_model):
    deployment = Deployment(tmp_path, kafka_bootstrap, trained_model)
    get_bus(deployment.settings.bus).ensure_topics(
        {
            **{t: 1 for t in vars(deployment.topics).values()},
            deployment.topics.requests: 3,
            deployment.topics.predictions: 3,
        }
    )
    yield deployment
    deployment.stop_all()


class SecureBroker:
    """The SASL_SSL broker of ``scripts/kafka up --secure``: its address, CA and credentials."""

    def __init__(self, port: str, state_dir: Path) -> None:
        self.bootstrap = f"127.0.0.1:{port}"
        self.url = f"kafka://{self.bootstrap}"
        self.ca = state_dir / "tls" / "ca.pem"
        self.credentials = state_dir / "credentials"

    def password_file(self, principal: str) -> Path:
        return self.credentials / f"{principal}.password"

    def password(self, principal: str) -> str:
        return self.password_file(principal).read_text().strip()

    def options(self, principal: str, password: str | None = None) -> dict[str, str]:
        """Client options of ``principal``: with ``password``, or none (it comes from a file)."""
        options = {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": principal,
            "ssl.ca.location": str(self.ca),
        }
        if password is not None:
            options["sasl.password"] = password
        return options

    def bus(self, principal: str, password: str | None = None):
        return get_bus(self.url, self.options(principal, password or self.password(principal)))

    def cli_args(self, principal: str) -> list[str]:
        """What a `streamfit` service gets: options on the command line, the password in a file."""
        args = [f"--bus={self.url}"]
        for key, value in self.options(principal).items():
            args.append(f"--bus-option={key}={value}")
        return [*args, f"--bus-password-file={self.password_file(principal)}"]


@pytest.fixture(scope="session")
def secure_broker() -> SecureBroker:
    """``scripts/kafka up --secure`` (idempotent: a running one is reused and left running).

    ``STREAMFIT_KAFKA_SECURE_PORT`` picks another port, as it does for the script. Fails, never
    skips, when the broker cannot be started.
    """
    port = os.environ.get("STREAMFIT_KAFKA_SECURE_PORT", "9093")
    home = Path(os.environ.get("STREAMFIT_KAFKA_HOME", Path.home() / ".cache/streamfit/kafka"))
    service_up("kafka", "--secure")
    return SecureBroker(port, home / f"broker-secure-{port}")

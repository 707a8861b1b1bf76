"""The chaos suite: real broker, real MLflow, each service a `streamfit` process, faults injected.

Every test adds one row per run to :data:`REPORT` (fault, requests, lost, duplicates, recovery
time); at the end of the session the table is printed and, when every chaos test ran and passed,
written to ``benchmarks/results/chaos.json`` (``STREAMFIT_CHAOS_REPORT`` picks another path).

``STREAMFIT_CHAOS_SEEDS`` sets how many seeds the random-kill tests run (2 by default, for CI;
``STREAMFIT_CHAOS_SEEDS=20`` for a long run): each seed picks its own kill points.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from streamfit.bus import Bus, get_bus
from tests.conftest import REPO
from tests.harness import free_port
from tests.kafka import conftest as kafka_fixtures
from tests.kafka.conftest import Deployment

# The kafka suite's fixtures: a deployment on the shared broker, one trained template model.
deployment = kafka_fixtures.deployment
trained_model = kafka_fixtures.trained_model

SEEDS = list(range(1, int(os.environ.get("STREAMFIT_CHAOS_SEEDS", "2")) + 1))
REPORT_PATH = Path(
    os.environ.get("STREAMFIT_CHAOS_REPORT", REPO / "benchmarks" / "results" / "chaos.json")
)
OWN_BROKER_PORT = "19092"
# What a replacement started at once after a SIGKILL may take, on the defaults, to have done
# what its predecessor left: answer the requests on its partitions, or record them (issue 23).
# Under exactly-once it first fences the dead one's transactional id, whose open transaction
# the broker aborts: twice the bound.
CATCH_UP_S = 10.0
CATCH_UP_EXACTLY_ONCE_S = 2 * CATCH_UP_S


@dataclass
class Row:
    fault: str
    runs: int = 0
    requests: int = 0
    lost: int = 0
    duplicates: int = 0
    recovery_s: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        recovery = self.recovery_s
        return {
            "fault": self.fault,
            "runs": self.runs,
            "requests": self.requests,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "recovery_s_max": round(max(recovery), 1) if recovery else None,
            "recovery_s_mean": round(sum(recovery) / len(recovery), 1) if recovery else None,
        }


class ChaosReport:
    """Rows by fault, summed over runs."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def add(
        self,
        fault: str,
        *,
        requests: int,
        lost: int,
        duplicates: int,
        recovery_s: float | None = None,
    ) -> None:
        row = self.rows.setdefault(fault, Row(fault))
        row.runs += 1
        row.requests += requests
        row.lost += lost
        row.duplicates += duplicates
        if recovery_s is not None:
            row.recovery_s.append(recovery_s)

    def table(self) -> str:
        head = (
            f"{'fault':<52} {'runs':>4} {'requests':>8} {'lost':>5} {'dups':>5} {'recovery s':>14}"
        )
        lines = [head, "-" * len(head)]
        for row in self.rows.values():
            d = row.as_dict()
            recovery = (
                f"{d['recovery_s_mean']:.1f} (max {d['recovery_s_max']:.1f})"
                if row.recovery_s
                else "-"
            )
            lines.append(
                f"{row.fault:<52} {row.runs:>4} {row.requests:>8} {row.lost:>5} "
                f"{row.duplicates:>5} {recovery:>14}"
            )
        return "\n".join(lines)


REPORT = ChaosReport()
_RUN = {"items": 0, "passed": 0, "failed": 0, "deselected": 0, "modules": set(), "seconds": 0.0}


def _is_chaos(nodeid: str) -> bool:
    return nodeid.startswith("tests/chaos/")


def pytest_collection_modifyitems(session, config, items) -> None:
    for item in items:
        if _is_chaos(item.nodeid):
            _RUN["items"] += 1
            _RUN["modules"].add(item.nodeid.split("::")[0])


def pytest_deselected(items) -> None:
    _RUN["deselected"] += sum(_is_chaos(item.nodeid) for item in items)


def pytest_runtest_logreport(report) -> None:
    if not _is_chaos(report.nodeid):
        return
    _RUN["seconds"] += report.duration  # set-up, call and teardown: the suite's own time
    if report.failed:
        _RUN["failed"] += 1
    elif report.when == "call" and report.passed:
        _RUN["passed"] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if not REPORT.rows:
        return
    terminalreporter.write_sep("=", "chaos report")
    terminalreporter.write_line(REPORT.table())
    modules = {f"tests/chaos/{p.name}" for p in (REPO / "tests" / "chaos").glob("test_*.py")}
    complete = (
        _RUN["modules"] == modules
        and not _RUN["deselected"]
        and not _RUN["failed"]
        and _RUN["passed"] == _RUN["items"]
    )
    if not complete:
        terminalreporter.write_line(f"(not written to {REPORT_PATH}: not every chaos test ran)")
        return
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(
        json.dumps(
            {
                "seeds": len(SEEDS),
                "suite_s": round(_RUN["seconds"], 1),
                "machine": f"{os.cpu_count()} cores, {platform.machine()}, shared with other jobs",
                "faults": [row.as_dict() for row in REPORT.rows.values()],
            },
            indent=2,
        )
        + "\n"
    )
    terminalreporter.write_line(f"written to {REPORT_PATH}")


@pytest.fixture(scope="session")
def chaos_report() -> ChaosReport:
    return REPORT


class Tail:
    """Every message on ``topic`` from its creation on, read by a broadcast consumer: for each
    one, its ``request_id``, when it was produced (its CreateTime, Unix time) and when this
    reader saw it (monotonic). Clocks a recovery by the work done: the first answer a
    replacement produced, or the requests sent before a moment that are still waiting."""

    def __init__(self, bus: Bus, topic: str) -> None:
        self.consumer = bus.consumer([topic], group=None)
        self.messages: list[tuple[str, float, float]] = []
        self._newest: dict[int, float] = {}  # partition -> newest CreateTime read there

    def read(self) -> None:
        """What has arrived: returns once a poll finds less than a full batch waiting, so a
        steady stream cannot keep the caller here."""
        full = True
        while full:
            batch = self.consumer.poll(1000, timeout=0.05)
            full = len(batch) == 1000
            seen = time.monotonic()
            for message in batch:
                request_id = orjson.loads(message.value)["request_id"]
                self.messages.append((request_id, message.timestamp, seen))
                newest = self._newest.get(message.partition, 0.0)
                self._newest[message.partition] = max(newest, message.timestamp)

    def ids(self) -> set[str]:
        return {request_id for request_id, _, _ in self.messages}

    def produced_by(self, moment: float, partitions: int, total: int) -> set[str] | None:
        """The ids produced at or before ``moment``; None while a partition may hold one this
        reader has not read yet (it read nothing later there, and not all ``total``)."""
        read_past = len(self._newest) == partitions and min(self._newest.values()) > moment
        if not read_past and len(self.ids()) < total:
            return None
        return {request_id for request_id, at, _ in self.messages if at <= moment}

    def first_seen_after(self, moment: float) -> float | None:
        """When this reader saw the first message produced after ``moment`` (monotonic)."""
        return min((seen for _, at, seen in self.messages if at > moment), default=None)

    def close(self) -> None:
        self.consumer.close()


def start_app(target: Deployment, name: str, *args: str):
    """The sample app as a process; returns it and the path its summary is written to."""
    summary = target.root / f"{name}.json"
    app = target.start("app", *args, "--summary-json", str(summary), "--timeout", "240", name=name)
    return app, summary


def lenient_env() -> dict[str, str]:
    """A trainer whose gate promotes any challenger: the model's quality is not the point."""
    return {**os.environ, "STREAMFIT_GATE_TOLERANCE": "10"}


@pytest.fixture(scope="session")
def own_broker() -> Iterator[str]:
    """A broker of this suite's own on 127.0.0.1:19092 (its own state directory), for faults that
    restart a broker; stopped at the end of the session. The shared one is never touched."""
    env = {**os.environ, "STREAMFIT_KAFKA_PORT": OWN_BROKER_PORT}
    script = REPO / "scripts" / "kafka"
    up = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        pytest.fail(f"scripts/kafka up on {OWN_BROKER_PORT} failed: {up.stderr}", pytrace=False)
    yield f"127.0.0.1:{OWN_BROKER_PORT}"
    subprocess.run([script, "down"], env=env, capture_output=True, timeout=300)


def restart_own_broker(pause_s: float = 2.0) -> float:
    """Stop and start the suite's own broker; returns how long it was down."""
    env = {**os.environ, "STREAMFIT_KAFKA_PORT": OWN_BROKER_PORT}
    script = REPO / "scripts" / "kafka"
    started = time.monotonic()
    subprocess.run([script, "down"], env=env, check=True, capture_output=True, timeout=300)
    time.sleep(pause_s)
    subprocess.run([script, "up"], env=env, check=True, capture_output=True, timeout=600)
    return time.monotonic() - started


@pytest.fixture
def deployment_on_own_broker(tmp_path, own_broker, trained_model):  # noqa: F811
    own = Deployment(tmp_path, own_broker, trained_model)
    get_bus(own.settings.bus).ensure_topics(
        {
            **{t: 1 for t in vars(own.topics).values()},
            own.topics.requests: 3,
            own.topics.predictions: 3,
        }
    )
    yield own
    own.stop_all()


class OwnPostgres:
    """A PostgreSQL server of one test's own (``scripts/postgres`` on a free port, its cluster
    under ``~/.cache/streamfit/postgres-PORT``), for faults that stop it; the shared server on
    5432 is never touched."""

    def __init__(self) -> None:
        self.port = free_port()
        self.env = {**os.environ, "STREAMFIT_POSTGRES_PORT": str(self.port)}
        home = Path(os.environ.get("STREAMFIT_POSTGRES_HOME", Path.home() / ".cache/streamfit"))
        self.state_dir = home / f"postgres-{self.port}"
        self.url = f"postgresql+psycopg://streamfit:streamfit@127.0.0.1:{self.port}/streamfit"

    def run(self, command: str) -> None:
        done = subprocess.run(
            [REPO / "scripts" / "postgres", command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise AssertionError(f"scripts/postgres {command} on {self.port}: {done.stderr}")

    def up(self) -> None:
        self.run("up")

    def down(self) -> None:
        """A fast shutdown: open transactions roll back, connections are cut."""
        self.run("down")


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A private PostgreSQL server, started; stopped and its cluster removed afterwards (as root
    the cluster belongs to the ``postgres`` OS user: root removes it all the same)."""
    server = OwnPostgres()
    try:
        server.up()
        yield server
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            server.down()
        shutil.rmtree(server.state_dir, ignore_errors=True)

"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa

from streamfit.bus import Bus, MemoryBus, get_bus

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the real services it needs, read from the fixtures it uses (directly or
    through others), so that ``-m "not kafka"`` deselects exactly those; a ``pytestmark`` in a
    conftest.py would be ignored by pytest."""
    for item in items:
        for fixture, marker in (("kafka_bootstrap", "kafka"), ("postgres_url", "postgres")):
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip a test that cannot run here; in CI (``CI`` set) fail it instead: what CI does not
    run there, users still get (a compiled runtime, a compiler, a second Python)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run this test)", pytrace=False)
    pytest.skip(reason)


def service_up(script: str, *flags: str, marker: str | None = None) -> None:
    """``scripts/<script> up [flags]`` (idempotent: a running service is left as it is); the test
    fails, never skips, when the service cannot start (``marker``: how to deselect its tests)."""
    up = subprocess.run([REPO / "scripts" / script, "up", *flags], capture_output=True, text=True)
    if up.returncode != 0:
        hint = f'; skip these tests with -m "not {marker}"' if marker else ""
        command = " ".join(["scripts/" + script, "up", *flags])
        reason = up.stderr.strip() or up.stdout.strip()
        pytest.fail(f"{command} failed ({reason}){hint}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The local broker of ``scripts/kafka``, started once if it is not running (left running).

    ``STREAMFIT_KAFKA_PORT`` picks another broker, as it does for the script.
    """
    service_up("kafka", marker="kafka")
    return f"127.0.0.1:{os.environ.get('STREAMFIT_KAFKA_PORT', '9092')}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The local PostgreSQL of ``scripts/postgres``, started once if it is not running (left
    running): the URL of its ``streamfit`` database. Fails, never skips, when it cannot start.

    ``STREAMFIT_POSTGRES_PORT`` picks another server, as it does for the script.
    """
    service_up("postgres", marker="postgres")
    port = os.environ.get("STREAMFIT_POSTGRES_PORT", "5432")
    return f"postgresql+psycopg://streamfit:streamfit@127.0.0.1:{port}/streamfit"


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL on a schema of this test's own (dropped afterwards): tests never see each other's
    rows, and every connection made from the URL, in any process, lands in that schema."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    with engine.begin() as db:
        db.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every database back end in turn: an SQLite file of the test's own, or a fresh schema on
    the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture(scope="session")
def mlflow_server() -> str:
    """The MLflow tracking server of ``scripts/mlflow`` (proxied artifacts), started once if it is
    not running (left running). Tests use experiment and registered-model names of their own.

    ``STREAMFIT_MLFLOW_PORT`` and ``STREAMFIT_MLFLOW_BACKEND`` configure it, as for the script.
    """
    service_up("mlflow")
    return f"http://127.0.0.1:{os.environ.get('STREAMFIT_MLFLOW_PORT', '5000')}"


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    """Every bus implementation in turn: a contract test runs once per transport."""
    if request.param == "memory":
        bus: Bus = MemoryBus()
    else:
        bus = get_bus(f"kafka://{request.getfixturevalue('kafka_bootstrap')}")
    yield bus
    bus.close()

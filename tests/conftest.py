"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamfit.bus import Bus, MemoryBus, get_bus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The local broker of ``scripts/kafka``, started once if it is not running (left running).

    ``STREAMFIT_KAFKA_PORT`` picks another broker, as it does for the script.
    """
    script = REPO / "scripts" / "kafka"
    port = os.environ.get("STREAMFIT_KAFKA_PORT", "9092")
    status = subprocess.run([script, "status"], capture_output=True, text=True)
    if status.returncode != 0:
        up = subprocess.run([script, "up"], capture_output=True, text=True)
        if up.returncode != 0:
            pytest.fail(
                f"scripts/kafka up failed ({up.stderr.strip() or up.stdout.strip()}); "
                'skip the Kafka tests with -m "not kafka"',
                pytrace=False,
            )
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def mlflow_server() -> str:
    """The MLflow tracking server of ``scripts/mlflow`` (proxied artifacts), started once if it is
    not running (left running). Tests use experiment and registered-model names of their own.

    ``STREAMFIT_MLFLOW_PORT`` and ``STREAMFIT_MLFLOW_BACKEND`` configure it, as for the script.
    """
    up = subprocess.run([REPO / "scripts" / "mlflow", "up"], capture_output=True, text=True)
    if up.returncode != 0:
        pytest.fail(
            f"scripts/mlflow up failed: {up.stderr.strip() or up.stdout.strip()}", pytrace=False
        )
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

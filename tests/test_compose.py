"""docker-compose.yml (Docker cannot run here): every streamfit service's command is one the CLI
accepts, with the right bus, store and tracking server, and a data directory of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from streamfit.cli import build_parser, settings_from
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
STREAMFIT = {name: s for name, s in SERVICES.items() if s.get("image") == "streamfit:local"}
STORE = "postgresql+psycopg://streamfit:streamfit@postgres:5432/streamfit"


def test_every_service_is_there() -> None:
    assert set(SERVICES) == {
        "kafka",
        "postgres",
        "mlflow",
        "init",
        "predictor-1",
        "predictor-2",
        "recorder",
        "trainer-1",
        "trainer-2",
        "monitor",
        "app",
    }
    assert SERVICES["postgres"]["image"] == "postgres:15"
    assert {SERVICES["postgres"]["environment"][k] for k in ("POSTGRES_USER", "POSTGRES_DB")} == {
        "streamfit"
    }
    mlflow = SERVICES["mlflow"]["command"]
    assert "--serve-artifacts" in mlflow and f"--backend-store-uri={STORE}" in mlflow


@pytest.mark.parametrize("name", sorted(set(STREAMFIT) - {"mlflow"}))
def test_the_command_matches_the_cli(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("STREAMFIT_")]:
        monkeypatch.delenv(variable)  # only the compose file speaks
    service = STREAMFIT[name]
    args = build_parser().parse_args(service["command"])
    assert args.command == name.split("-")[0]
    settings = settings_from(args)
    assert settings.bus == "kafka://kafka:29092"
    assert settings.data_dir == Path("/data")
    if args.command != "app":
        assert settings.tracking_uri == "http://mlflow:5000" or args.command == "recorder"
    if args.command in ("recorder", "trainer", "monitor"):
        assert settings.store_url == STORE
    if args.command in ("init", "trainer"):
        assert settings.trials_url == STORE  # no SQLite file on the service's volume
    # its data directory is a volume of its own
    (volume,) = service["volumes"]
    assert volume == f"{name}-data:/data"


def test_no_two_services_share_a_volume() -> None:
    mounted = [v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", [])]
    assert len(mounted) == len(set(mounted)) and set(mounted) == set(COMPOSE["volumes"])

"""docker-compose.yml (Docker cannot run here): every streamfit service's command is one the CLI
accepts, with the right bus, store and tracking server, and a data directory of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from streamfit.cli import build_parser, settings_from
from streamfit.config import Settings
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
        "prometheus",
        "grafana",
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


def test_every_group_member_keeps_its_host_name_when_re_created() -> None:
    """Its group member id is the host name and the data directory (the same /data for all):
    a host name of its own, not the container's id, lets a re-created container take its
    predecessor's partitions at once."""
    members = {
        name: service
        for name, service in STREAMFIT.items()
        if service["command"][0] in ("predictor", "recorder", "trainer")
    }
    assert {name: service.get("hostname") for name, service in members.items()} == {
        name: name for name in members
    }


def test_no_two_services_share_a_volume() -> None:
    mounted = [v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", [])]
    named = [m for m in mounted if not m.startswith("./")]  # the rest: files of deploy/
    assert len(named) == len(set(named)) and set(named) == set(COMPOSE["volumes"])


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> repository file of a service's bind mounts (read-only)."""
    mounts = {}
    for volume in SERVICES[service]["volumes"]:
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            assert mode == ["ro"], volume
            assert (REPO / source).exists(), f"{service} mounts {source}, which does not exist"
            mounts[target] = REPO / source
    return mounts


def test_prometheus_scrapes_every_long_running_service_and_loads_the_alerts() -> None:
    mounts = _mounts("prometheus")
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]
    (rule_file,) = config["rule_files"]
    assert mounts[f"/etc/prometheus/{rule_file}"] == REPO / "deploy/prometheus/alerts.yml"
    scraped = {
        target.split(":")[0]
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    # every service that runs for good (not init, not the app) is scraped
    long_running = {n for n, s in STREAMFIT.items() if s.get("restart") != "no"} - {"mlflow"}
    assert scraped == long_running
    # at the metrics port it serves on (its command sets none: the default), under its job
    defaults = Settings()
    for job in config["scrape_configs"]:
        for target in (t for static in job["static_configs"] for t in static["targets"]):
            host, port = target.split(":")
            args = build_parser().parse_args(SERVICES[host]["command"])
            assert job["job_name"] == f"streamfit-{args.command}"
            assert int(port) == settings_from(args).metrics_port(args.command)
            assert int(port) == defaults.metrics_port(args.command)


def test_grafana_is_provisioned_with_the_dashboard_and_the_datasource() -> None:
    mounts = _mounts("grafana")
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090" and datasource["uid"] == "prometheus"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "streamfit.yml").read_text())[
        "providers"
    ]
    dashboards = Path(provider["options"]["path"])
    assert mounts[str(dashboards / "streamfit.json")] == REPO / "deploy/grafana/streamfit.json"
    assert SERVICES["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"

"""Models through the MLflow registry, over the real broker and the real tracking server: the
one promotion path and what it announces, and a predictor refusing a tampered bundle."""

from __future__ import annotations

import os
import signal
import time
import uuid

import orjson
import pytest

from streamfit import messages
from streamfit.models.promotion import promote
from streamfit.models.registry import ModelRegistry
from tests.serving.conftest import Registered, train_bundle

pytestmark = pytest.mark.kafka

EVENT_KEYS = {"version", "event", "model_uri", "sha256", "reason"}


def _events(listener, count: int) -> list[dict]:
    got: list[dict] = []
    while len(got) < count:
        batch = listener.poll(10, timeout=60)
        assert batch, f"only {len(got)} of {count} model events arrived: {got}"
        got += [orjson.loads(m.value) for m in batch]
    return got


def _assert_announced(event: dict, registry: ModelRegistry, kind: str) -> None:
    assert set(event) >= EVENT_KEYS, event
    assert event["event"] == kind
    entry = registry.get(event["version"])
    assert event["model_uri"] == f"models:/{registry.name}/{event['version']}"
    assert event["sha256"] == entry.sha256 and len(entry.sha256) == 64
    champion = registry.champion()
    assert champion is not None and champion.version == event["version"]


def test_every_entry_point_promotes_through_one_function_and_announces(deployment):
    registry = ModelRegistry.from_settings(deployment.settings)
    bus = deployment.bus()
    listener = bus.consumer([deployment.topics.models], group=None)
    listener.poll(1, timeout=1)  # assigned and positioned at the end before anything happens
    lenient = {"env": {**os.environ, "STREAMFIT_GATE_TOLERANCE": "10"}}

    def cli(*args: str, name: str, **kwargs) -> None:
        process = deployment.start(*args, name=name, **kwargs)
        assert process.wait(timeout=600) == 0, deployment.log(process)

    # `init --force` (a champion exists): a manual round, promoted by its gate, announced
    cli("init", "--force", "--max-evals", "1", name="init-force", **lenient)
    (forced,) = _events(listener, 1)
    _assert_announced(forced, registry, "promoted")
    assert forced["version"] == 2 and forced["trigger"] == "manual"

    cli("promote", "1", name="promote")
    (promoted,) = _events(listener, 1)
    _assert_announced(promoted, registry, "promoted")
    assert promoted["version"] == 1 and promoted["by"] == "cli"

    cli("rollback", name="rollback")
    (rolled_back,) = _events(listener, 1)
    _assert_announced(rolled_back, registry, "rolled_back")
    assert rolled_back["version"] == 2

    # the trainer's gate
    trainer = deployment.start("trainer", "--max-evals", "1", name="trainer", **lenient)
    deployment.wait_for_log(trainer, "trainer waiting")
    with bus.producer() as producer:
        producer.produce(deployment.topics.retrain, messages.retrain("test", 0))
    (retrained,) = _events(listener, 1)
    _assert_announced(retrained, registry, "promoted")
    assert retrained["version"] == 3 and retrained["trigger"] == "retrain"

    # `init` with no champion yet (what the demo's ensure_initial_model runs too)
    fresh = f"fresh-{uuid.uuid4().hex[:8]}"
    cli(
        "init",
        "--max-evals",
        "1",
        "--experiment",
        fresh,
        name="init",
        env={**os.environ, "STREAMFIT_REGISTERED_MODEL": fresh},
    )
    (initial,) = _events(listener, 1)
    fresh_registry = ModelRegistry(deployment.settings.mlflow_uri, fresh)
    _assert_announced(initial, fresh_registry, "initial")
    assert initial["version"] == 1
    listener.close()
    bus.close()


def test_a_tampered_bundle_is_refused_by_a_running_predictor(deployment, mlflow_server):
    predictor = deployment.start("predictor")
    deployment.wait_for_log(predictor, "now serving model v1")
    deployment.wait_for_log(predictor, "predictor consuming")
    registered = Registered(deployment.settings, mlflow_server)
    bad = registered.save(train_bundle(rounds=5))
    # bytes changed after registration, where the tracking server keeps them
    target = registered.artifact_file(bad)
    target.write_bytes(target.read_bytes().replace(b"Tree=0", b"Tree=0 ", 1))
    promote(deployment.settings, bad, reason="tampered after registration")
    deployment.wait_for_log(predictor, f"refused model v{bad} (hash mismatch), still serving v1")
    summary = deployment.run_app("--count", "20", "--rate", "100")
    assert summary["answered"] == 20 and summary["lost"] == 0
    assert set(summary["model_versions"]) == {"1"}


def test_a_standby_trainer_runs_the_round_of_a_trainer_killed_mid_round(deployment):
    registry = ModelRegistry.from_settings(deployment.settings)
    bus = deployment.bus()
    listener = bus.consumer([deployment.topics.models], group=None)
    listener.poll(1, timeout=1)
    # On the defaults: no replacement joins under the killed trainer's id, so the standby gets
    # the partition once the killed one's session times out (45 s).
    options = ("--max-evals", "4")
    lenient = {**os.environ, "STREAMFIT_GATE_TOLERANCE": "10"}
    trainers = [
        deployment.start("trainer", *options, name=f"trainer-{i}", env=lenient) for i in (1, 2)
    ]
    for trainer in trainers:
        deployment.wait_for_log(trainer, "trainer waiting")
    deadline = time.monotonic() + 120
    group = deployment.settings.trainer_group
    while sorted(deployment.group_members(group).values()) != [0, 1]:  # one works, one waits
        assert time.monotonic() < deadline, deployment.group_members(group)
        time.sleep(1)

    with bus.producer() as producer:
        producer.produce(deployment.topics.retrain, messages.retrain("test", 0))
    deadline = time.monotonic() + 120
    while not (working := [t for t in trainers if "retraining (" in deployment.log(t)]):
        assert time.monotonic() < deadline, "no trainer started the round"
        time.sleep(0.2)
    (worker,) = working
    (standby,) = [t for t in trainers if t is not worker]
    deployment.wait_for_log(worker, "trial 1/4")  # mid-round: searching
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    killed_log = deployment.log(worker)

    # the command was not committed: the standby gets the partition and runs the round
    deployment.wait_for_log(standby, "round done", timeout=600)
    (event,) = _events(listener, 1)
    _assert_announced(event, registry, "promoted")
    assert f"round done: v{event['version']} promoted" in deployment.log(standby)
    assert "gate:" not in killed_log  # killed before its gate: nothing of it was promoted
    assert registry.champion().version == event["version"]
    # a version the killed round may have registered was never champion (no promotion tag)
    history = {version for _, version, _ in registry.champion_history()}
    assert history == {1, event["version"]}, history
    assert listener.poll(10, timeout=3) == []  # and nothing else was announced
    listener.close()
    bus.close()

"""Separate `streamfit` processes meeting only on the real Kafka broker."""

from __future__ import annotations

import subprocess
import time

import orjson
import pytest

from streamfit import messages
from tests.conftest import REPO
from tests.harness import champion, wait_until
from tests.kafka.conftest import copy_of_champion

pytestmark = pytest.mark.kafka


def test_end_to_end_with_separate_processes(deployment):
    predictor = deployment.start("predictor")
    recorder = deployment.start("recorder", "--retrain-every", "100")
    trainer = deployment.start("trainer", "--max-evals", "2")
    deployment.wait_for_log(predictor, "predictor consuming")
    deployment.wait_for_log(recorder, "recorder consuming")
    deployment.wait_for_log(trainer, "trainer waiting")
    first = deployment.run_app("--count", "300", "--rate", "150")
    assert first["sent"] == 300
    assert first["answered"] == 300 and first["lost"] == 0
    assert set(first["model_versions"]) == {"1"}
    # 300 labelled observations recorded asked for retrains; a new champion is announced and
    # served
    wait_until(lambda: champion(deployment) > 1, 300, "a promoted retrained model", every=0.5)
    deployment.wait_for_log(predictor, f"now serving model v{champion(deployment)}")
    second = deployment.run_app("--count", "50", "--rate", "50")
    assert second["answered"] == 50 and second["lost"] == 0
    assert all(int(v) > 1 for v in second["model_versions"])


def test_two_predictors_share_partitions_and_both_follow_a_new_model(deployment):
    first = deployment.start("predictor", name="predictor-1")
    second = deployment.start("predictor", name="predictor-2")
    for process in (first, second):
        deployment.wait_for_log(process, "predictor consuming")
    summary = deployment.run_app("--count", "600", "--rate", "300")
    assert summary["answered"] == 600 and summary["lost"] == 0
    # both processes answered a share: each logs its partitions and predicted something
    members = deployment.group_members(deployment.settings.group)
    assert len(members) == 2 and all(members.values()), members
    # a retrain's model-ready event reaches every predictor instance
    trainer = deployment.start("trainer", "--max-evals", "1")
    deployment.wait_for_log(trainer, "trainer waiting")
    with deployment.bus().producer() as producer:
        producer.produce(deployment.topics.retrain, messages.retrain("test", 0))
    wait_until(lambda: champion(deployment) > 1, 300, "a promoted model", every=0.5)
    for process in (first, second):
        deployment.wait_for_log(process, f"now serving model v{champion(deployment)}")


def test_promote_and_rollback_from_the_cli_are_followed_by_a_running_predictor(deployment):
    from streamfit.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(deployment.settings)
    original = registry.champion().version
    copy = copy_of_champion(deployment.settings)  # a second, valid version to switch to
    predictor = deployment.start("predictor")
    deployment.wait_for_log(predictor, f"now serving model v{original}")

    promoted = deployment.start("promote", str(copy), name="promote")
    assert promoted.wait(timeout=120) == 0, deployment.log(promoted)
    deployment.wait_for_log(predictor, f"now serving model v{copy}")
    summary = deployment.run_app("--count", "20", "--rate", "100")
    assert summary["lost"] == 0 and set(summary["model_versions"]) == {str(copy)}

    rolled_back = deployment.start("rollback", name="rollback")
    assert rolled_back.wait(timeout=120) == 0, deployment.log(rolled_back)
    assert champion(deployment) == original
    deployment.wait_for_log(predictor, f"now serving model v{original} (was v{copy})")

    missing = deployment.start("promote", "999", name="promote-missing")
    assert missing.wait(timeout=120) == 2
    assert "no version 999" in deployment.log(missing)


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_broker_restart_mid_stream_loses_nothing(deployment, guarantee):
    """Down for longer than the group's session, mid-stream: every request is answered (once,
    under exactly-once, whose transaction open at the outage is aborted and its requests
    answered again) and the predictor never stops."""
    predictor = deployment.start("predictor", "--guarantee", guarantee)
    deployment.wait_for_log(predictor, "predictor consuming")
    app = deployment.start(
        "app",
        "--count",
        "3000",
        "--rate",
        "300",
        "--summary-json",
        str(deployment.root / "restart.json"),
        "--timeout",
        "240",
    )
    deployment.wait_for_log(app, "answered ")  # mid-stream: it is connected and sending
    kafka = REPO / "scripts" / "kafka"
    subprocess.run([kafka, "down"], check=True, timeout=120)
    # Down for longer than the group's 45 s session: librdkafka gives the session up, and the
    # predictor must rejoin under its instance id (not stop, taking itself for a twin).
    time.sleep(50)
    subprocess.run([kafka, "up"], check=True, timeout=300)
    summary = deployment.app_summary(app, deployment.root / "restart.json", timeout=400)

    def story() -> str:  # evaluated on failure only: the predictor's log, topic and group
        lines = deployment.log(predictor).splitlines()
        quiet = [line for line in lines if "Kafka broker at" not in line]  # the outage's
        answers = deployment.messages_in(deployment.topics.predictions)
        members = deployment.group_members(deployment.settings.group)
        return "\n".join([*quiet[-30:], f"{answers} predictions on the topic; members {members}"])

    assert predictor.poll() is None, story()  # the predictor rode it out
    assert summary["sent"] == 3000
    assert summary["answered"] == 3000 and summary["lost"] == 0, story()
    if guarantee == "exactly-once":  # what an aborted transaction wrote is never read
        assert summary["duplicates"] == 0


def test_plain_kafka_clients_get_predictions(deployment):
    """Kafka's own console tools, not streamfit code, send a request and read the answer."""
    predictor = deployment.start("predictor")
    deployment.wait_for_log(predictor, "predictor consuming")
    kafka = REPO / "scripts" / "kafka"
    request = {
        "request_id": "console-1",
        "data": {"age": 52, "workclass": "Private", "education": "Masters", "hours_per_week": 50},
    }
    subprocess.run(
        [
            kafka,
            "tool",
            "console-producer",
            "--bootstrap-server",
            deployment.bootstrap,
            "--topic",
            deployment.topics.requests,
        ],
        input=orjson.dumps(request).decode() + "\n",
        text=True,
        check=True,
        timeout=120,
    )
    out = subprocess.run(
        [
            kafka,
            "tool",
            "console-consumer",
            "--bootstrap-server",
            deployment.bootstrap,
            "--topic",
            deployment.topics.predictions,
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "60000",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    answer = orjson.loads(out.strip().splitlines()[0])
    assert answer["request_id"] == "console-1"
    assert 0.0 <= answer["probability"] <= 1.0 and answer["model_version"] == 1

"""The secured broker (``scripts/kafka up --secure``): TLS, SASL/SCRAM and ACLs per principal.

Strangers are refused, each principal may do its own job and nothing else, services take their
password from a file and never print it, and a refusal is one clear line with a non-zero exit.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from streamfit import messages
from streamfit.bus import BusRefused, get_bus
from streamfit.stores import ObservationStore
from tests.conftest import REPO
from tests.kafka.conftest import Deployment, SecureBroker

pytestmark = pytest.mark.kafka


def _topic(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _streamfit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamfit.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def _create_topics(broker: SecureBroker, *names: str) -> None:
    """Only the admin may create topics on the secured broker."""
    admin = broker.bus("admin")
    admin.ensure_topics(dict.fromkeys(names, 1))
    admin.close()


def test_a_client_without_credentials_is_refused(secure_broker):
    bus = get_bus(secure_broker.url, {})
    with pytest.raises(BusRefused, match="expects another security.protocol"):
        bus.producer()


def test_a_tls_client_without_sasl_is_refused_without_waiting_out_the_timeout(secure_broker):
    options = {"security.protocol": "SSL", "ssl.ca.location": str(secure_broker.ca)}
    bus = get_bus(secure_broker.url, options)
    bus.connect_timeout = 120  # BusUnavailable after that: the refusal was not recognised
    with pytest.raises(BusRefused, match="expects another security.protocol"):
        bus.producer()


def test_a_wrong_password_is_refused(secure_broker, tmp_path):
    bus = get_bus(secure_broker.url, secure_broker.options("app", "not-the-password"))
    with pytest.raises(BusRefused, match="Kafka refused principal 'app': authentication failed"):
        bus.producer()
    # the same from the command line: one line on stderr, exit code 2, no traceback
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    args = [a for a in secure_broker.cli_args("app") if not a.startswith("--bus-password-file")]
    done = _streamfit(
        "app", *args, f"--bus-password-file={wrong}", "--count", "1", "--data-dir", str(tmp_path)
    )
    assert done.returncode == 2, done.stderr
    refusal = [line for line in done.stderr.splitlines() if line.startswith("streamfit app:")]
    assert len(refusal) == 1, done.stderr
    assert refusal[0].startswith(
        "streamfit app: error: Kafka refused principal 'app': authentication failed"
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr


def test_the_app_may_not_publish_a_model(secure_broker):
    models = _topic("models")
    _create_topics(secure_broker, models)
    bus = secure_broker.bus("app")
    producer = bus.producer()
    producer.produce(models, messages.model_ready(99, "promoted", by="intruder"))
    with pytest.raises(BusRefused) as refused:
        producer.flush()
    assert str(refused.value) == (
        f"Kafka refused principal 'app': not authorised to write topic {models!r}"
    )
    # ... nor read one, nor join the predictors' group
    with pytest.raises(BusRefused, match=f"not authorised to read topic '{models}'"):
        bus.consumer([models], group=None)
    requests = _topic("requests")
    _create_topics(secure_broker, requests)
    consumer = bus.consumer([requests], group="streamfit-predictor")
    with pytest.raises(BusRefused, match="not authorised to use consumer group"):
        consumer.poll(1, timeout=10)
    consumer.close()
    bus.close()


def test_only_the_trainer_and_the_operator_publish_models(secure_broker):
    models = _topic("models")
    _create_topics(secure_broker, models)
    for principal in ("trainer", "operator"):
        with secure_broker.bus(principal).producer() as producer:
            producer.produce(models, messages.model_ready(1, "promoted", by=principal))
    for principal in ("predictor", "recorder", "monitor", "app"):
        producer = secure_broker.bus(principal).producer()
        producer.produce(models, messages.model_ready(1, "promoted", by=principal))
        with pytest.raises(BusRefused, match=f"principal '{principal}': not authorised to write"):
            producer.flush()


def test_the_predictor_reads_requests_and_writes_predictions(secure_broker):
    requests, predictions = _topic("requests"), _topic("predictions")
    _create_topics(secure_broker, requests, predictions)
    app = secure_broker.bus("app")
    predictor = secure_broker.bus("predictor")
    answers = app.consumer([predictions], group=None)
    with app.producer() as producer:
        for i in range(5):
            producer.produce(requests, messages.request(f"r{i}", {"age": 30 + i}), b"r%d" % i)
    group = f"streamfit-predictor-{uuid.uuid4().hex[:8]}"
    received = []
    with predictor.consumer([requests], group=group) as consumer:
        while len(received) < 5:
            batch = consumer.poll(10, timeout=30)
            assert batch, f"the predictor got {len(received)} of 5 requests"
            received += batch
        with predictor.producer() as producer:
            for message in received:
                producer.produce(predictions, message.value, message.key)
        consumer.commit()
    got = []
    while len(got) < 5:
        batch = answers.poll(10, timeout=30)
        assert batch, f"the app read {len(got)} of 5 predictions"
        got += batch
    assert sorted(m.key for m in got) == [b"r%d" % i for i in range(5)]
    answers.close()


SERVICES = {
    # name: (principal, extra arguments, line logged once it serves)
    "predictor": ("predictor", ("--no-compile-model",), "consuming"),
    "recorder": ("recorder", ("--retrain-every", "1000000"), "recorder consuming"),
}


@pytest.mark.parametrize(
    ("services", "guarantee"),
    [
        (("predictor",), "at-least-once"),
        (("predictor",), "exactly-once"),
        (("predictor", "recorder"), "at-least-once"),
    ],
)
def test_the_pipeline_runs_end_to_end_with_the_right_principals(
    services, guarantee, secure_broker, tmp_path, trained_model
):
    deployment = Deployment(tmp_path, secure_broker.bootstrap, trained_model)
    _create_topics(secure_broker, *vars(deployment.topics).values())
    group = ("--group", f"streamfit-predictor-{uuid.uuid4().hex[:8]}")
    try:
        started = []
        for name in services:
            principal, extra, ready = SERVICES[name]
            args = [*secure_broker.cli_args(principal), *extra, "--log-level", "DEBUG"]
            if name == "predictor":  # exactly-once: transactional ids prefixed by the group
                args += [*group, "--guarantee", guarantee]
            if name == "recorder":  # its ACL: groups prefixed streamfit-recorder
                args += ["--recorder-group", f"streamfit-recorder-{uuid.uuid4().hex[:8]}"]
            started.append((deployment.start(name, *args), ready))
        for process, ready in started:
            deployment.wait_for_log(process, ready)
        summary = deployment.run_app(*secure_broker.cli_args("app"), "--count", "60")
        assert summary["sent"] == 60
        assert summary["answered"] == 60 and summary["lost"] == 0
        if "recorder" in services:  # the labels rode in the requests
            store = ObservationStore(deployment.settings.store_url)
            deadline = time.monotonic() + 60
            while store.count(labelled=True) < 60:
                assert time.monotonic() < deadline, f"{store.count(labelled=True)} of 60 recorded"
                time.sleep(0.3)
            store.close()
    finally:
        deployment.stop_all()
    logs = {path.name: path.read_text() for path in tmp_path.glob("*.log")}
    assert "predictor.log" in logs and "app.log" in logs
    assert "settings: Settings(" in logs["predictor.log"]  # logged at DEBUG, masked
    _assert_no_password(secure_broker, logs)


def test_a_service_with_the_wrong_principal_exits_with_one_clear_line(
    secure_broker, tmp_path, trained_model
):
    deployment = Deployment(tmp_path, secure_broker.bootstrap, trained_model)
    _create_topics(secure_broker, *vars(deployment.topics).values())
    predictor = deployment.start(
        "predictor", *secure_broker.cli_args("app"), "--no-compile-model", "--log-level", "DEBUG"
    )
    assert predictor.wait(timeout=120) == 2
    log = deployment.log(predictor)
    errors = [line for line in log.splitlines() if line.startswith("streamfit predictor: error:")]
    assert errors == [
        f"streamfit predictor: error: Kafka refused principal 'app': "
        f"not authorised to read topic {deployment.topics.models!r}"
    ], log
    # an operator's CLI command as the app: the champion moves on disk, the announcement is refused
    promote = _streamfit(
        "promote", "1", "--config", str(deployment.config), *secure_broker.cli_args("app")
    )
    assert promote.returncode == 2
    assert promote.stderr.strip().endswith(
        f"streamfit promote: error: Kafka refused principal 'app': "
        f"not authorised to write topic {deployment.topics.models!r}"
    ), promote.stderr
    _assert_no_password(
        secure_broker, {"predictor": log, "promote": promote.stdout + promote.stderr}
    )


def _assert_no_password(broker: SecureBroker, outputs: dict[str, str]) -> None:
    passwords = {
        path.stem: path.read_text().strip() for path in broker.credentials.glob("*.password")
    }
    assert {"admin", "predictor", "app"} <= set(passwords)
    for name, text in outputs.items():
        for principal, password in passwords.items():
            assert password not in text, f"{principal}'s password is in {name}"


def test_console_tools_use_the_ready_made_client_configs(secure_broker):
    """Kafka's own tools, with credentials/PRINCIPAL.properties, are held to the same ACLs."""
    topics = [_topic("requests")]
    _create_topics(secure_broker, *topics)
    kafka = REPO / "scripts" / "kafka"
    config = secure_broker.credentials / "app.properties"
    out = subprocess.run(
        [kafka, "--secure", "tool", "topics", "--bootstrap-server", secure_broker.bootstrap]
        + ["--command-config", str(config), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert topics[0] in out  # the app may see the topics it writes ...
    assert not [t for t in out if t.startswith(("models", "retrain", "drift"))]  # ... only those

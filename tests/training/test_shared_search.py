"""Two trainers share one round's search: an Optuna study on the real PostgreSQL, announced over
the real broker, every trial a child run on the real MLflow server. One trainer is SIGKILLed
mid-trial; the round still runs exactly its budget and promotes once."""

from __future__ import annotations

import signal
import socket
import threading
import time

import optuna
import orjson
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from optuna.trial import TrialState

from streamfit import messages
from streamfit.config import Settings
from streamfit.training.space import DEFAULT_SPACE
from streamfit.training.study import CLAIM, GRACE_S, HEARTBEAT_S, SharedStudy, optuna_url
from streamfit.training.trials import TrialStore
from tests.chaos.conftest import lenient_env
from tests.harness import champion, wait_until
from tests.kafka import conftest as kafka_fixtures

deployment = kafka_fixtures.deployment
trained_model = kafka_fixtures.trained_model

BUDGET = 6


@pytest.fixture
def trials_url(postgres_schema_url: str, postgres_url: str):
    """A trial store of the test's own; Optuna's schema beside it is dropped afterwards too."""
    yield postgres_schema_url
    schema = postgres_schema_url.rsplit("%3D", 1)[1]
    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema}_optuna CASCADE")
    engine.dispose()


def _study(trials_url: str) -> optuna.Study | None:
    storage = optuna.storages.RDBStorage(optuna_url(trials_url))
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def test_two_trainers_share_a_round_one_killed_mid_trial(deployment, trials_url):
    env = {
        **lenient_env(),
        "STREAMFIT_OPTIMIZER": "optuna",
        "STREAMFIT_TRIALS": trials_url,
        "STREAMFIT_MAX_EVALS": str(BUDGET),
    }
    bus = deployment.bus()
    models = bus.consumer([deployment.topics.models], group=None)
    models.poll(1, timeout=1)
    trainers = [deployment.start("trainer", name=f"trainer-{n}", env=env) for n in "ab"]
    for trainer in trainers:
        deployment.wait_for_log(trainer, "trainer waiting")
    before = champion(deployment)
    with bus.producer() as producer:
        producer.produce(deployment.topics.retrain, messages.retrain("shared", 0))
    wait_until(
        lambda: any("search shared as study" in deployment.log(t) for t in trainers),
        180,
        "a leader",
    )
    leader, helper = sorted(trainers, key=lambda t: "search shared" not in deployment.log(t))
    deployment.wait_for_log(helper, "joining round", timeout=120)
    helper_id = f"{socket.gethostname()}-{helper.pid}"

    def helper_running() -> bool:
        study = _study(trials_url)
        return study is not None and any(
            t.state == TrialState.RUNNING
            and t.user_attrs.get("worker") == helper_id
            and len(t.params) == len(DEFAULT_SPACE.names)  # its CV under way
            for t in study.get_trials(deepcopy=False)
        )

    wait_until(helper_running, 300, "a trial of the helper training")
    helper.send_signal(signal.SIGKILL)
    helper.wait(timeout=30)
    killed = time.monotonic()
    deployment.wait_for_log(leader, "round done", timeout=600)
    waited = time.monotonic() - killed

    study = _study(trials_url)
    trials = study.get_trials(deepcopy=False)
    claimed = [t for t in trials if t.user_attrs.get(CLAIM) == t.number]
    finished = [t for t in claimed if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == BUDGET
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = [t for t in claimed if t.state == TrialState.FAIL]
    assert [t.user_attrs["worker"] for t in dead] == [helper_id]
    retried = [t for t in finished if t.system_attrs.get("failed_trial") == dead[0].number]
    assert len(retried) == 1 and retried[0].params == dead[0].params
    workers = {t.user_attrs["worker"] for t in claimed}
    assert len(workers) == 2 and helper_id in workers
    assert waited >= GRACE_S - HEARTBEAT_S  # failed by its heartbeat's silence, not before

    store = TrialStore(trials_url)
    # The round whose search ran above; a failure after it (the broker away when the promotion
    # is announced) retries the command as a new round, which must not promote a second time.
    round_row = store.rounds()[0]
    assert len(store.trials(round_row["round_id"])) == BUDGET
    store.close()
    client = MlflowClient(deployment.settings.tracking_uri)
    children = client.search_runs(
        [client.get_run(round_row["mlflow_run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{round_row['mlflow_run_id']}'",
    )
    assert len(children) == BUDGET

    events: list[dict] = []
    wait_until(
        lambda: (
            events.extend(orjson.loads(m.value) for m in models.poll(10, timeout=0.5)) or events
        ),
        60,
        "the promotion's announcement",
    )
    time.sleep(2)
    events += [orjson.loads(m.value) for m in models.poll(10, timeout=1)]
    models.close()
    bus.close()
    assert len(events) == 1, events  # exactly one promotion
    assert champion(deployment) == events[0]["version"] > before
    assert leader.poll() is None


def test_workers_racing_for_the_last_slots_run_exactly_the_budget(trials_url, tmp_path):
    """Four workers (threads here) on one study of budget 10: no overshoot, nothing RUNNING."""
    settings = Settings(data_dir=tmp_path, optimizer="optuna", trials=trials_url)
    SharedStudy(settings, "race", 10, create=True).close()
    ran: list[int] = []

    def worker() -> None:
        study = SharedStudy(settings, "race", 10, create=False)

        def evaluate(trial) -> float:
            x = trial.suggest_float("x", -1.0, 1.0)
            time.sleep(0.05)  # keep slots busy while the others ask
            return x * x

        ran.append(study.work(evaluate))
        study.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    study = SharedStudy(settings, "race", 10, create=False)
    assert study.counts() == (10, 0)
    assert len([t for t in study.trials() if t.state == TrialState.COMPLETE]) == 10
    assert sum(ran) == 10 and len(ran) == 4
    study.close()

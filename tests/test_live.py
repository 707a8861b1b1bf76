"""Challengers on live traffic, end to end: predictor (shadow mode), recorder and trainer (the
live judge) on the in-process bus and on the real broker, the real MLflow registry, SQLite.

A worse challenger (trained on shuffled labels) is rejected and never answers; a better one is
promoted and then answers; an identical one ends at the maximum with the champion kept. Every
decision reports its number of labelled pairs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import lightgbm as lgb
import numpy as np
import orjson
import pytest

from streamfit import messages
from streamfit.bus import Bus, MemoryBus, get_bus
from streamfit.challengers.live import ComparisonError, start_comparison
from streamfit.config import Settings, Topics
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import load_adult
from streamfit.datasets.adult import requests as adult_requests
from streamfit.demo import _partitions
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import ModelBundle
from streamfit.recording import Recorder
from streamfit.serving import Predictor
from streamfit.stores import Comparison, ComparisonStore
from streamfit.training.service import TrainerService
from tests.harness import wait_until
from tests.serving.conftest import Registered, mlflow_settings


def _bundle(
    rounds: int, rows: int, seed: int = 0, shuffled: bool = False, **params: object
) -> ModelBundle:
    frame = load_adult("train").sample(rows, random_state=seed)
    labels = frame["label"].to_numpy()
    if shuffled:  # a model of noise: it learned nothing about the label
        labels = labels[np.random.default_rng(seed).permutation(len(labels))]
    pipeline = FeaturePipeline(ADULT).fit(frame)
    data = lgb.Dataset(
        pipeline.transform(frame), labels, categorical_feature=pipeline.categorical_features
    )
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed, **params}
    return ModelBundle(lgb.train(params, data, num_boost_round=rounds), pipeline, {})


class Live:
    """Predictor, recorder and trainer on one bus, each in a thread, as separate services."""

    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        bus.ensure_topics(_partitions(settings))
        self.predictor = Predictor(settings, bus)
        self.recorder = Recorder(settings, bus)
        self.trainer = TrainerService(settings, bus)
        self.answers = bus.consumer([settings.topics.predictions], group=None)
        self.producer = bus.producer()
        self.threads = []
        for service in (self.predictor, self.recorder, self.trainer):
            thread = threading.Thread(target=service.run, daemon=True)
            thread.start()
            self.threads.append(thread)
            assert service.ready.wait(60)
        self.comparisons = ComparisonStore(settings.store_url)
        self.seen: list[dict] = []
        self.sent: list[str] = []  # request ids sent, in order

    def stream(
        self, count: int, until: Callable[[], object], seed: int = 1, timeout: float = 240
    ) -> None:
        """Send labelled requests (the label rides in the request) in slices until ``until()``."""
        rows = adult_requests(count, seed=seed)
        deadline = time.monotonic() + timeout
        for start in range(0, count, 100):
            for i, row in enumerate(rows[start : start + 100], start):
                self.sent.append(f"{seed}-{i}")
                self.producer.produce(
                    self.settings.topics.requests, messages.request(f"{seed}-{i}", row)
                )
            self.producer.flush()
            self._read(0.5)
            if until():
                return
        while not until():
            assert time.monotonic() < deadline, "no decision in time"
            self._read(0.5)

    def _read(self, timeout: float) -> None:
        for message in self.answers.poll(5000, timeout=timeout):
            self.seen.append(orjson.loads(message.value))

    def decided(self) -> Comparison | None:
        found = self.comparisons.list(self.settings.registered_model)
        return found[-1] if found and found[-1].decision != "running" else None

    def close(self) -> None:
        for service in (self.predictor, self.recorder, self.trainer):
            service.stop()
        for thread in self.threads:
            thread.join(30)
        self.answers.close()
        self.producer.close()
        self.comparisons.close()


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def live_settings(request, tmp_path: Path, mlflow_server: str) -> Iterator[tuple[Settings, Bus]]:
    suffix = uuid.uuid4().hex[:8]
    settings = mlflow_settings(
        tmp_path,
        mlflow_server,
        promotion="shadow",
        live_check_seconds=0.2,
        retrain_every=10**9,  # no rounds: the judge alone
        compile_model=False,  # the compiled path is test_shadow's; CPU is shared here
        linger_ms=1,
    )
    if request.param == "memory":
        bus: Bus = MemoryBus()
    else:
        uri = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
        settings = settings.replace(
            bus=uri,
            topics=Topics(**{name: f"{name}-{suffix}" for name in vars(Topics())}),
            group=f"predictors-{suffix}",
            recorder_group=f"recorders-{suffix}",
            trainer_group=f"trainers-{suffix}",
        )
        bus = get_bus(uri)
    yield settings, bus
    bus.close()


def promoted_and_followed(live: Live, models: Registered, version: int) -> None:
    """``version`` becomes the champion and the running predictor serves it."""
    wait_until(lambda: models.champion() == version, 60, "the promotion", every=0.05)
    wait_until(
        lambda: live.predictor.model_version == version,
        60,
        "the predictor following",
        every=0.05,
    )


def _run(request_close, settings, bus, mlflow_server, champion, challenger, **changes):
    """Champion and challenger registered, the services running, the challenger's comparison
    started (shadow or canary, as ``settings.promotion``), requests streamed until it is
    decided."""
    settings = settings.replace(**changes)
    models = Registered(settings, mlflow_server)
    champion_version = models.save(champion)
    models.promote(champion_version)
    challenger_version = models.save(challenger)
    live = Live(settings, bus)
    request_close(live.close)
    started = start_comparison(settings, challenger_version, bus=bus, reason="test")
    assert started.champion == champion_version and started.decision == "running"
    wait_until(
        lambda: live.predictor.shadow_version == challenger_version, 60, "shadowing", every=0.05
    )
    live.stream(6000, live.decided)
    decided = live.decided()
    assert decided is not None
    print(f"\n{decided.decision} after {decided.pairs} labelled pairs ({decided.reason})")
    return live, models, decided, champion_version, challenger_version


def test_a_worse_challenger_is_rejected_and_never_answers(request, live_settings, mlflow_server):
    settings, bus = live_settings
    live, models, decided, champion, challenger = _run(
        request.addfinalizer,
        settings,
        bus,
        mlflow_server,
        _bundle(60, 8000),
        _bundle(60, 8000, shuffled=True),
    )
    assert decided.decision == "reject" and decided.upper < 0
    assert settings.live_min_pairs <= decided.pairs < settings.live_max_pairs
    assert live.seen and all(a["model_version"] == champion for a in live.seen)
    assert any(a.get("shadow", {}).get("version") == challenger for a in live.seen)
    # Acted upon (after the decision was recorded): shadowing ended, the run tagged.
    wait_until(lambda: live.predictor.shadow_version is None, 60, "shadowing ending", every=0.05)
    assert models.champion() == champion and models.registry.shadow() is None
    run_id = models.registry.get(challenger).run_id

    def tagged():
        return models.registry.client.get_run(run_id).data.tags.get("live_decision")

    wait_until(lambda: tagged() == "reject", 60, "the decision on the challenger's run", every=0.05)
    run = models.registry.client.get_run(run_id)
    assert run.data.metrics["live_pairs"] == decided.pairs


def test_a_better_challenger_is_promoted_then_answers(request, live_settings, mlflow_server):
    settings, bus = live_settings
    live, models, decided, champion, challenger = _run(
        request.addfinalizer,
        settings,
        bus,
        mlflow_server,
        _bundle(3, 500),
        _bundle(80, 10000, seed=2),
    )
    assert decided.decision == "promote" and decided.lower > 0
    promoted_and_followed(live, models, challenger)
    assert live.predictor.shadow_version is None

    def after():  # answers to the requests sent now (older ones may still be arriving)
        return [a for a in live.seen if a["request_id"].startswith("9-")]

    live.stream(20, lambda: len(after()) >= 20, seed=9)
    assert {a["model_version"] for a in after()} == {challenger}
    assert not any("shadow" in a for a in after())


def test_an_identical_challenger_ends_at_the_maximum(request, live_settings, mlflow_server):
    settings, bus = live_settings
    same = _bundle(30, 4000, seed=3)
    live, models, decided, champion, challenger = _run(
        request.addfinalizer, settings, bus, mlflow_server, same, same, live_max_pairs=150
    )
    assert decided.decision == "keep" and decided.pairs == 150
    assert decided.lower <= 0 <= decided.upper
    assert models.champion() == champion


def test_one_comparison_at_a_time(tmp_path, mlflow_server):
    settings = mlflow_settings(tmp_path, mlflow_server, promotion="shadow")
    models = Registered(settings, mlflow_server)
    models.promote(models.save(_bundle(5, 500)))
    start_comparison(settings, models.save(_bundle(6, 500)))
    with pytest.raises(ComparisonError, match="already"):
        start_comparison(settings, models.save(_bundle(7, 500)))

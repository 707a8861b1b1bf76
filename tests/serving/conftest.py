from __future__ import annotations

import threading

import lightgbm as lgb
import pytest

from streamfit.app import adult_requests
from streamfit.bundle import ModelBundle, ModelStore
from streamfit.bus import MemoryBus
from streamfit.config import Settings
from streamfit.data import load_adult
from streamfit.features import FeaturePipeline
from streamfit.serving import Predictor


def train_bundle(rounds: int, rows: int = 4000, seed: int = 0) -> ModelBundle:
    """A small real model: enough to predict, cheap enough for a unit test."""
    frame = load_adult("train").sample(rows, random_state=seed)
    pipeline = FeaturePipeline().fit(frame)
    data = lgb.Dataset(
        pipeline.transform(frame), frame["label"], categorical_feature=pipeline.categorical_features
    )
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed}
    booster = lgb.train(params, data, num_boost_round=rounds)
    return ModelBundle(booster, pipeline, {"data_rows": rows})


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path, retrain_every=20, linger_ms=1)


@pytest.fixture
def store(settings):
    store = ModelStore(settings.models_dir, keep=5)
    store.set_champion(store.save(train_bundle(rounds=10)))
    return store


@pytest.fixture
def requests_data():
    return adult_requests(60, seed=1)


class Running:
    """A predictor running in a thread on an in-process bus, with a listener on its outputs."""

    def __init__(self, settings: Settings, predictor: type[Predictor] = Predictor) -> None:
        self.bus = MemoryBus()
        self.settings = settings
        topics = settings.topics
        self.listener = self.bus.consumer(
            [topics.predictions, topics.dead_letter, topics.retrain], group=None
        )
        self.producer = self.bus.producer()
        self.predictor = predictor(settings, self.bus)
        self.thread = threading.Thread(target=self.predictor.run, daemon=True)
        self.thread.start()
        assert self.predictor.ready.wait(30)

    def send(self, topic: str, value: bytes) -> None:
        self.producer.produce(topic, value)

    def collect(self, count: int, timeout: float = 10.0) -> list:
        got: list = []
        while len(got) < count:
            batch = self.listener.poll(1000, timeout=timeout)
            if not batch:
                break
            got += batch
        return got

    def stop(self) -> None:
        self.predictor.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def running(settings, store):
    service = Running(settings)
    yield service
    service.stop()

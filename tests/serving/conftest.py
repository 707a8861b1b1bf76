from __future__ import annotations

import tempfile
import threading
import uuid
from pathlib import Path

import lightgbm as lgb
import pytest

from streamfit.bus import MemoryBus
from streamfit.config import Settings
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import FEATURE_COLUMNS, load_adult
from streamfit.datasets.adult import requests as adult_requests
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import MODEL_FILE, ModelBundle
from streamfit.models.promotion import promote
from streamfit.models.registry import ModelRegistry
from streamfit.serving import Predictor
from streamfit.tracking import get_tracker


def train_bundle(rounds: int, rows: int = 4000, seed: int = 0) -> ModelBundle:
    """A small real model: enough to predict, cheap enough for a unit test."""
    frame = load_adult("train").sample(rows, random_state=seed)
    pipeline = FeaturePipeline(ADULT).fit(frame)
    data = lgb.Dataset(
        pipeline.transform(frame), frame["label"], categorical_feature=pipeline.categorical_features
    )
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed}
    booster = lgb.train(params, data, num_boost_round=rounds)
    return ModelBundle(booster, pipeline, {"data_rows": rows})


def mlflow_settings(tmp_path: Path, mlflow_server: str, **changes) -> Settings:
    """Settings on the real tracking server, with an experiment and registered model of their
    own (tests never see each other's versions)."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    return Settings(
        data_dir=tmp_path, tracking_uri=mlflow_server, experiment=name, registered_model=name
    ).replace(**changes)


class Registered:
    """What a trainer does to a model, for tests: register bundles (the tracker's own
    ``log_model``: the bundle's files plus their SHA-256 tag), read them back, tamper with one."""

    def __init__(self, settings: Settings, mlflow_server: str) -> None:
        self.settings = settings
        self.server = mlflow_server
        self.tracker = get_tracker(settings)
        self.registry = ModelRegistry.from_settings(settings)
        self.bundles: dict[int, ModelBundle] = {}

    def save(self, bundle: ModelBundle) -> int:
        example = load_adult("test")[list(FEATURE_COLUMNS)].dropna().head(5)
        example = example.reset_index(drop=True)
        with tempfile.TemporaryDirectory() as scratch:
            bundle.save(Path(scratch))
            self.tracker.start_round("test-model", {})
            try:
                version = self.tracker.log_model(Path(scratch), example, [0.5] * len(example))
            finally:
                self.tracker.end_round()
        assert version is not None
        self.bundles[version] = bundle
        return version

    def load(self, version: int) -> ModelBundle:
        return self.bundles[version]

    def champion(self) -> int | None:
        entry = self.registry.champion()
        return entry.version if entry else None

    def promote(self, version: int, **kwargs) -> None:
        promote(self.settings, version, **kwargs)

    def artifact_file(self, version: int, name: str = MODEL_FILE) -> Path:
        """The file as the tracking server stores it (its --artifacts-destination)."""
        uri = self.registry.client.get_model_version_download_uri(self.registry.name, str(version))
        port = self.server.rsplit(":", 1)[1]
        root = Path.home() / ".cache" / "streamfit" / f"mlflow-{port}" / "artifacts"
        relative = uri.removeprefix("mlflow-artifacts:/").lstrip("/")
        return root / relative / "artifacts" / "bundle" / name


@pytest.fixture
def settings(tmp_path, mlflow_server):
    return mlflow_settings(tmp_path, mlflow_server, retrain_every=20, linger_ms=1)


@pytest.fixture
def store(settings, mlflow_server):
    """Registered model versions; version 1 (10 trees) is the champion."""
    store = Registered(settings, mlflow_server)
    store.promote(store.save(train_bundle(rounds=10)))
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

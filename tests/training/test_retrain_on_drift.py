"""``retrain_on_drift``: a drifted=true event on the drift topic starts one round per champion."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamfit.bus import MemoryBus
from streamfit.config import Settings
from streamfit.training import round as round_module
from streamfit.training.round import RoundOutcome
from streamfit.training.service import TrainerService


def _event(drifted: bool) -> bytes:
    features = {"age": {"score": 0.7 if drifted else 0.0, "p_value": 0.0, "drifted": drifted}}
    return orjson.dumps(
        {"window_end": 1000, "drift": 0.3, "drifted": drifted, "features": features}
    )


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the (slow, tested elsewhere) round with a recorder; the champion stays put."""
    calls: list[dict[str, Any]] = []

    def fake_round(settings: Settings, **kwargs: Any) -> RoundOutcome:
        calls.append(kwargs)
        return RoundOutcome(len(calls), False, "refused", {}, None, 0.0, 1)

    monkeypatch.setattr(round_module, "run_round", fake_round)
    return calls


def _run(settings: Settings, send: list[tuple[str, bytes]]) -> TrainerService:
    bus = MemoryBus()
    trainer = TrainerService(settings, bus)
    trainer.registry.champion()  # the registry's store made (seconds, once) before events flow
    thread = threading.Thread(target=trainer.run, daemon=True)
    thread.start()
    assert trainer.ready.wait(10)
    producer = bus.producer()
    for topic, value in send:
        producer.produce(topic, value)
        producer.flush()
        time.sleep(0.8)  # one poll each: separate batches, as they would arrive live
    trainer.stop()
    thread.join(60)
    return trainer


def test_drift_alarm_starts_one_round_per_champion(tmp_path: Path, rounds: list) -> None:
    settings = Settings(data_dir=tmp_path, retrain_on_drift=True, drop_drifting_features=0.6)
    drift = settings.topics.drift
    trainer = _run(settings, [(drift, _event(False)), (drift, _event(True)), (drift, _event(True))])
    assert [call["trigger"] for call in rounds] == ["drift"]  # the repeat alarm is not re-answered
    assert rounds[0]["recent"] is not None  # drift-aware: recent requests for the thresholder
    assert trainer.drift_alarms == 2 and trainer.commands_seen == 0


def test_retrain_command_still_wins_and_drift_is_ignored_when_off(
    tmp_path: Path, rounds: list
) -> None:
    settings = Settings(data_dir=tmp_path)
    _run(settings, [(settings.topics.drift, _event(True)), (settings.topics.retrain, b"{}")])
    assert [call["trigger"] for call in rounds] == ["retrain"]
    assert rounds[0]["recent"] is None


def test_a_new_champion_may_be_retrained_for_drift_again(tmp_path: Path, rounds: list) -> None:
    settings = Settings(data_dir=tmp_path, retrain_on_drift=True)
    trainer = TrainerService(settings, MemoryBus())
    message = type("M", (), {"topic": settings.topics.drift, "value": _event(True)})()
    assert trainer._trigger([message]) == "drift"
    assert trainer._trigger([message]) is None
    from tests.serving.conftest import Registered, train_bundle

    # promoted by another trainer, on another machine: only the registry knows it
    other = settings.replace(data_dir=tmp_path / "other", tracking_uri=settings.mlflow_uri)
    registered = Registered(other, other.mlflow_uri)
    registered.promote(registered.save(train_bundle(rounds=2, rows=500)))
    assert not settings.models_dir.exists()
    assert trainer._trigger([message]) == "drift"
    assert trainer._trigger([message]) is None

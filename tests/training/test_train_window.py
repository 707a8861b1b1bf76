"""A round trains on at most the newest ``train_window`` labelled observations."""

from __future__ import annotations

import dataclasses

from streamfit import messages
from streamfit.bus import get_bus
from streamfit.config import Settings
from streamfit.stores import ObservationBatch
from streamfit.training import service
from streamfit.training.service import TrainerService


def test_a_round_gets_only_the_newest_train_window_observations(settings: Settings) -> None:
    settings = dataclasses.replace(settings, train_window=3)
    trainer = TrainerService(settings, get_bus("memory"))
    for i in range(8):  # labelled one after the other: r7 is the newest
        request = messages.request(f"r{i}", {"age": 20 + i, "workclass": "Private"})
        trainer.observations.record(
            ObservationBatch(requests=[(f"r{i}", request)], labels=[(f"r{i}", i % 2)]), now=i
        )
    given = []

    def run_round(settings: Settings, *, new_observations, **_: object):
        given.append(new_observations)
        raise RuntimeError("the round itself is not the point here")

    assert not trainer._round("retrain", 1, producer=None, run_round=run_round)
    assert given[0]["request_id"].tolist() == ["r5", "r6", "r7"]
    assert given[0]["age"].tolist() == [25.0, 26.0, 27.0]


def test_a_round_hands_its_memory_back_to_the_system_even_when_it_fails(
    settings: Settings, monkeypatch
) -> None:
    """glibc keeps what a round freed (its data, its fits): the trainer trims the heap after
    every round, failed or not (streamfit/heap.py)."""
    trims = []
    monkeypatch.setattr(service, "release_freed_memory", lambda: trims.append(1))
    trainer = TrainerService(settings, get_bus("memory"))

    def run_round(settings: Settings, **_: object):
        assert not trims  # after the round, not before
        raise RuntimeError("the round itself is not the point here")

    assert not trainer._round("retrain", 1, producer=None, run_round=run_round)
    assert trims == [1]

"""Canary mode end to end (``--promotion canary``): predictor, recorder and trainer (the live
judge) on the in-process bus and on the real broker, the real MLflow registry, SQLite.

The challenger answers the requests whose ``crc32(request_id) % 100`` is below
``canary_percent``, and only those, while its canary runs (the champion's score rides in
``shadow``). A worse challenger (shuffled labels) is rolled back, by the sequential test on
labels or, before labels, by the floor on its estimated accuracy; a better one is promoted.
Every request sent is answered, through every change.
"""

from __future__ import annotations

import zlib

import pytest

from streamfit.config import ConfigError, Settings
from streamfit.models.bundle import ModelBundle
from tests import test_live
from tests.harness import wait_until
from tests.test_live import _bundle, _run, promoted_and_followed

live_settings = test_live.live_settings  # the same services on both buses, canary settings

PERCENT = 30


def _canary(settings: Settings, **changes: object) -> Settings:
    return settings.replace(promotion="canary", canary_percent=PERCENT, **changes)


def _hashed_in(request_id: str) -> bool:
    return zlib.crc32(request_id.encode()) % 100 < PERCENT


def _send(live, count: int) -> None:
    """Send ``count`` more requests (ids ``9-i``), in slices of 100."""
    live.stream(count, lambda: sum(i.startswith("9-") for i in live.sent) >= count, seed=9)


def _all_answered(live) -> None:
    """Every request sent is answered (once the late answers are in), none dead-lettered."""

    def answered() -> set[str]:
        live._read(0.2)
        return {a["request_id"] for a in live.seen}

    wait_until(lambda: answered() >= set(live.sent), 120, "every request answered", every=0.05)
    assert live.predictor.stats.dead_letters == 0


def _check_split(live, champion: int, challenger: int) -> list[dict]:
    """While the canary ran (both scores in the answer) the challenger answered its hash share
    exactly; it never answered anything else. Returns the canary-time answers."""
    during = [a for a in live.seen if "shadow" in a]
    assert during, "no answer carried both scores"
    for answer in during:
        by_challenger = answer["model_version"] == challenger
        assert by_challenger == _hashed_in(answer["request_id"]), answer
        other = answer["shadow"]["version"]
        assert other == (champion if by_challenger else challenger), answer
    assert all(_hashed_in(a["request_id"]) for a in live.seen if a["model_version"] == challenger)
    return during


def test_a_worse_canary_is_rolled_back(request, live_settings, mlflow_server):
    settings, bus = live_settings
    live, models, decided, champion, challenger = _run(
        request.addfinalizer,
        _canary(settings, canary_accuracy_floor=0.0),  # the labels decide here
        bus,
        mlflow_server,
        _bundle(60, 8000),
        _bundle(60, 8000, shuffled=True),
    )
    assert decided.policy == "canary" and decided.decision == "rollback"
    assert decided.upper < 0 and decided.pairs >= settings.live_min_pairs
    during = _check_split(live, champion, challenger)
    share = sum(a["model_version"] == challenger for a in during) / len(during)
    assert 0.5 * PERCENT / 100 < share < 1.5 * PERCENT / 100
    # Rolled back: the canary ends, every later request is the champion's.
    wait_until(lambda: live.predictor.shadow_version is None, 60, "the canary ending", every=0.05)
    assert models.champion() == champion and models.registry.shadow() is None
    _send(live, 200)
    _all_answered(live)
    after = [a for a in live.seen if a["request_id"].startswith("9-")]
    assert len(after) == 200 and all(a["model_version"] == champion for a in after)
    assert not any("shadow" in a for a in after)


def _coin_flip() -> ModelBundle:
    """A challenger that learned nothing and knows it: every probability about 0.5 (one tree,
    a vanishing learning rate, no start from the base rate), so its estimated accuracy is too."""
    return _bundle(1, 2000, seed=5, learning_rate=1e-6, boost_from_average=False)


def test_a_canary_below_its_estimated_accuracy_floor_is_rolled_back_before_labels(
    request, live_settings, mlflow_server
):
    """At the default floor (0.6): a challenger answering about 0.5 to everything."""
    settings, bus = live_settings
    assert _canary(settings).canary_accuracy_floor == Settings().canary_accuracy_floor == 0.6
    live, models, decided, champion, challenger = _run(
        request.addfinalizer, _canary(settings), bus, mlflow_server, _bundle(60, 8000), _coin_flip()
    )
    assert decided.decision == "rollback"
    assert "estimated accuracy" in decided.reason and "below the floor" in decided.reason
    _check_split(live, champion, challenger)
    wait_until(lambda: live.predictor.shadow_version is None, 60, "the canary ending", every=0.05)
    assert models.champion() == champion
    _all_answered(live)


def test_a_better_canary_is_promoted(request, live_settings, mlflow_server):
    settings, bus = live_settings
    live, models, decided, champion, challenger = _run(
        request.addfinalizer,
        _canary(settings),
        bus,
        mlflow_server,
        _bundle(3, 500),
        _bundle(80, 10000, seed=2),
    )
    assert decided.decision == "promote" and decided.lower > 0
    _check_split(live, champion, challenger)
    promoted_and_followed(live, models, challenger)
    _send(live, 100)
    _all_answered(live)
    after = [a for a in live.seen if a["request_id"].startswith("9-")]
    assert {a["model_version"] for a in after} == {challenger}


def test_canary_percent_outside_0_to_100_is_refused(tmp_path):
    for percent in (0, 100):
        assert Settings(data_dir=tmp_path, canary_percent=percent).canary_percent == percent
    for percent in (-1, 101):
        with pytest.raises(ConfigError, match="canary_percent must be in"):
            Settings(data_dir=tmp_path, canary_percent=percent)

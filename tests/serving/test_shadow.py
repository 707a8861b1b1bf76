"""Shadow mode in the predictor: the champion answers, the challenger's score rides along."""

from __future__ import annotations

import orjson
import pytest

from streamfit import messages
from streamfit.bus import Message
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import requests as adult_requests
from streamfit.features import request_schema
from streamfit.models.promotion import end_shadow, promote, start_shadow
from streamfit.recording._decode import decode_batch
from tests.harness import wait_until
from tests.serving.conftest import Running, mlflow_settings, train_bundle


@pytest.fixture
def settings(tmp_path, mlflow_server):
    return mlflow_settings(tmp_path, mlflow_server, linger_ms=1, promotion="shadow")


def _answers(running: Running, count: int) -> list[dict]:
    return [orjson.loads(m.value) for m in running.collect(count) if m.topic == "predictions"]


def test_the_champion_answers_and_the_challenger_is_recorded_beside_it(
    running, requests_data, store, settings
):
    challenger = store.save(train_bundle(rounds=40, seed=3))
    start_shadow(settings, challenger, bus=running.bus, reason="test")
    wait_until(
        lambda: running.predictor.shadow_version == challenger,
        30,
        "the challenger shadowed",
        every=0.02,
    )
    assert running.predictor.wait_for_compile(600)
    # Both models compiled, when a C compiler is there (as the champion alone would be).
    compiled = running.predictor.serving_compiled
    assert (getattr(running.predictor.shadow.bundle, "compiled", None) is not None) == compiled
    rows = requests_data[:20]
    for i, row in enumerate(rows):
        running.send("requests", messages.request(f"s{i}", row))
    answers = sorted(_answers(running, 20), key=lambda a: int(a["request_id"][1:]))
    assert len(answers) == 20
    champion_p = store.load(1).predict_records(rows)
    challenger_p = store.load(challenger).predict_records(rows)
    for answer, mine, theirs in zip(answers, champion_p, challenger_p, strict=True):
        assert answer["model_version"] == 1  # the challenger never answers
        assert answer["probability"] == pytest.approx(mine, abs=1e-6)
        assert answer["label"] == int(answer["probability"] >= 0.5)
        assert answer["shadow"]["version"] == challenger
        assert answer["shadow"]["probability"] == pytest.approx(theirs, abs=1e-6)
    assert running.predictor.stats.shadow_predictions == 20
    # The recorder reads the shadow score into the batch it stores.
    decoded = decode_batch(
        [Message("predictions", orjson.dumps(a), None, 0, i) for i, a in enumerate(answers)],
        settings.topics,
        request_schema(ADULT),
    )
    assert [s[:2] for s in decoded.batch.shadows] == [
        (a["request_id"], challenger) for a in answers
    ]


def test_shadowing_ends_on_its_event_and_on_promotion(running, requests_data, store, settings):
    first = store.save(train_bundle(rounds=20, seed=4))
    start_shadow(settings, first, bus=running.bus)
    wait_until(
        lambda: running.predictor.shadow_version == first,
        30,
        "the first challenger shadowed",
        every=0.02,
    )
    end_shadow(settings, first, bus=running.bus, reason="rejected")
    wait_until(lambda: running.predictor.shadow_version is None, 30, "shadowing ended", every=0.02)
    running.send("requests", messages.request("plain", requests_data[0]))
    assert "shadow" not in _answers(running, 1)[0]  # no shadow: the message as before

    second = store.save(train_bundle(rounds=30, seed=5))
    start_shadow(settings, second, bus=running.bus)
    wait_until(
        lambda: running.predictor.shadow_version == second,
        30,
        "the second challenger shadowed",
        every=0.02,
    )
    assert store.registry.shadow().version == second
    promote(settings, second, bus=running.bus, reason="live test")
    wait_until(
        lambda: running.predictor.model_version == second, 30, "the second one served", every=0.02
    )
    wait_until(lambda: running.predictor.shadow_version is None, 30, "shadowing ended", every=0.02)
    running.send("requests", messages.request("promoted", requests_data[1]))
    answer = _answers(running, 1)[0]
    assert answer["model_version"] == second and "shadow" not in answer


def test_a_predictor_started_mid_test_finds_the_shadow_in_the_registry(store, settings):
    challenger = store.save(train_bundle(rounds=15, seed=6))
    start_shadow(settings, challenger)
    running = Running(settings)
    try:
        assert running.predictor.shadow_version == challenger
    finally:
        running.stop()


def test_the_champion_cannot_shadow_itself(store, settings):
    from streamfit.models.bundle import BundleError

    with pytest.raises(BundleError, match="is the champion"):
        start_shadow(settings, 1)


def test_a_predictor_in_offline_mode_ignores_shadowing(store, settings):
    challenger = store.save(train_bundle(rounds=12, seed=7))
    running = Running(settings.replace(promotion="offline"))
    try:
        start_shadow(settings, challenger, bus=running.bus)
        running.send("requests", messages.request("offline", adult_requests(1)[0]))
        answer = _answers(running, 1)[0]
        assert answer["model_version"] == 1 and "shadow" not in answer
        assert running.predictor.shadow_version is None
    finally:
        running.stop()

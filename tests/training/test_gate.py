"""The champion/challenger gate and the holdout it scores on."""

from __future__ import annotations

import lightgbm as lgb
import pandas as pd
import pytest

from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import load_adult
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import ModelBundle, ModelStore
from streamfit.training.gate import decide, split_fixed_holdout, split_recent


def _bundle(train: pd.DataFrame, rounds: int) -> ModelBundle:
    pipeline = FeaturePipeline(ADULT).fit(train)
    dataset = lgb.Dataset(
        pipeline.transform(train),
        train["label"].to_numpy(),
        categorical_feature=pipeline.categorical_features,
        params={"verbosity": -1},
    )
    params = {"objective": "binary", "learning_rate": 0.1, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, dataset, num_boost_round=rounds)
    return ModelBundle(booster, pipeline, {"metrics": {}})


@pytest.fixture(scope="module")
def split(adult_small: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_fixed_holdout(adult_small, 0.2)


def test_gate_refuses_a_worse_challenger_and_promotes_a_better_one(tmp_path, split) -> None:
    train, holdout = split
    store = ModelStore(tmp_path / "models", keep=3)
    good = store.save(_bundle(train, 100))
    store.set_champion(good)

    one_tree = _bundle(train, 1)
    refused = decide(one_tree, store, holdout, tolerance=0.005)
    assert not refused.promoted
    assert refused.reason.startswith("refused")
    assert refused.champion_version == good
    assert refused.challenger["log_loss"] > refused.champion["log_loss"] + 0.005

    store.set_champion(store.save(one_tree))
    better = decide(_bundle(train, 100), store, holdout, tolerance=0.005)
    assert better.promoted and better.reason.startswith("promoted")
    assert better.challenger["log_loss"] < better.champion["log_loss"]


def test_first_model_is_always_promoted(tmp_path, split) -> None:
    train, holdout = split
    decision = decide(_bundle(train, 1), ModelStore(tmp_path / "m"), holdout, tolerance=0.0)
    assert decision.promoted and decision.reason == "first model"


def test_tolerance_lets_a_slightly_worse_challenger_through(tmp_path, split) -> None:
    train, holdout = split
    store = ModelStore(tmp_path / "models")
    store.set_champion(store.save(_bundle(train, 40)))
    challenger = _bundle(train, 20)  # under-fitted: somewhat worse
    strict = decide(challenger, store, holdout, tolerance=0.0)
    gap = strict.challenger["log_loss"] - strict.champion["log_loss"]
    assert not strict.promoted and gap > 0
    assert decide(challenger, store, holdout, tolerance=gap + 1e-9).promoted


def test_fixed_holdout_is_stable_stratified_and_disjoint() -> None:
    adult = load_adult("train").assign(row=lambda f: range(len(f)))
    train_a, hold_a = split_fixed_holdout(adult, 0.1)
    # The same rows every time: no seed from the settings is involved.
    _, hold_b = split_fixed_holdout(adult, 0.1)
    pd.testing.assert_frame_equal(hold_a, hold_b)
    assert len(train_a) + len(hold_a) == len(adult)
    assert hold_a["label"].mean() == pytest.approx(adult["label"].mean(), abs=0.002)
    assert set(train_a["row"]).isdisjoint(hold_a["row"])


def test_recent_observations_newest_share_is_held_out() -> None:
    observations = load_adult("test").head(50).assign(request_id=[f"r{i}" for i in range(50)])
    train, holdout = split_recent(observations, 0.2, ADULT.features)
    assert len(train) == 40 and len(holdout) == 10
    assert holdout["age"].tolist() == observations["age"].tail(10).tolist()
    assert "request_id" not in holdout.columns
    empty_train, empty_holdout = split_recent(None, 0.2, ADULT.features)
    assert empty_train.empty and empty_holdout.empty


def test_pruning_keeps_the_previous_champion_so_rollback_has_a_target(tmp_path, split) -> None:
    train, _ = split
    store = ModelStore(tmp_path / "models", keep=2)
    bundle = _bundle(train, 2)
    first = store.save(bundle)
    store.set_champion(first)
    second = store.save(bundle)
    store.set_champion(second)
    for _ in range(3):  # refused challengers push the old versions out of the newest two
        store.save(bundle)
    assert store.previous_champion() == first
    assert first in store.versions() and second in store.versions()
    assert len(store.versions()) == 4  # two newest + champion + previous champion

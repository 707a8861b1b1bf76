"""Rounds without MLflow (NullTracker): bundles, rounds reached, warm start, trial store."""

from __future__ import annotations

import lightgbm as lgb
import pandas as pd
import pytest

from streamfit.config import Settings
from streamfit.models.bundle import ModelStore
from streamfit.tracking import NullTracker
from streamfit.training.objective import CVObjective, cv_rounds_within, refit_rounds
from streamfit.training.optimizers import OPTIMIZERS
from streamfit.training.round import run_round
from streamfit.training.space import DEFAULT_SPACE, lightgbm_params, params_key
from streamfit.training.trials import TrialStore


def _round(settings: Settings, data: pd.DataFrame, evals: int = 3, **kwargs):
    return run_round(
        settings,
        trigger=kwargs.pop("trigger", "initial"),
        max_evals=evals,
        tracker=NullTracker(),
        base_data=data,
        **kwargs,
    )


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_yields_a_valid_bundle(
    settings: Settings, adult_small: pd.DataFrame, optimizer: str
) -> None:
    settings = settings.replace(optimizer=optimizer)
    outcome = _round(settings, adult_small, evals=3)
    store = ModelStore(settings.models_dir)
    bundle = store.load(outcome.version)
    bundle.validate()
    assert outcome.promoted and store.champion() == outcome.version
    assert bundle.manifest["optimizer"] == optimizer
    assert set(bundle.manifest["params"]) == set(DEFAULT_SPACE.names)
    for name in ("num_leaves", "num_boost_round", "min_child_samples", "min_data_per_group"):
        value = bundle.manifest["params"][name]
        assert type(value) is int and value in DEFAULT_SPACE[name].values()
    trials = TrialStore(settings.trials_url).trials(outcome.round_id)
    assert [t["optimizer"] for t in trials] == [optimizer] * 3
    assert 0.5 < outcome.metrics["auc"] <= 1.0


def test_trials_record_rounds_reached_and_refit_uses_the_winners(
    settings: Settings, adult_small: pd.DataFrame
) -> None:
    outcome = _round(settings, adult_small, evals=4)
    trials = TrialStore(settings.trials_url).trials(outcome.round_id)
    assert len(trials) == 4
    for trial in trials:
        assert trial["status"] == "ok"
        # Early stopping decides: the rounds reached stay within the searched cap.
        assert 1 <= trial["rounds"] <= trial["params"]["num_boost_round"]
    winner = min(trials, key=lambda t: t["cv_loss"])
    assert outcome.best_iteration == winner["rounds"]
    bundle = ModelStore(settings.models_dir).load(outcome.version)
    # Binary: one tree per round; the refit scales the CV rounds up to the full row count.
    assert bundle.booster.num_trees() == refit_rounds(winner["rounds"])
    assert bundle.manifest["best_iteration"] == winner["rounds"]
    assert bundle.manifest["params"] == winner["params"]


def test_max_boost_rounds_bounds_the_search_and_the_model(
    settings: Settings, adult_small: pd.DataFrame
) -> None:
    settings = settings.replace(max_boost_rounds=40)
    outcome = _round(settings, adult_small, evals=3)
    trials = TrialStore(settings.trials_url).trials(outcome.round_id)
    # Every trial is searched within the bound, and it binds: the best models are larger.
    assert max(t["rounds"] for t in trials) == cv_rounds_within(40) == 32
    bundle = ModelStore(settings.models_dir).load(outcome.version)
    assert bundle.booster.num_trees() == refit_rounds(outcome.best_iteration) <= 40
    assert bundle.manifest["max_boost_rounds"] == 40


def test_cv_objective_reports_the_best_iteration_not_the_cap(adult_small: pd.DataFrame) -> None:
    from streamfit.datasets.adult import CONTRACT as ADULT
    from streamfit.features import FeaturePipeline

    pipeline = FeaturePipeline(ADULT).fit(adult_small)
    objective = CVObjective(
        pipeline.transform(adult_small),
        adult_small["label"].to_numpy(),
        pipeline.categorical_features,
        DEFAULT_SPACE,
        patience=10,
    )
    # A high learning rate overfits fast: early stopping must stop well before the cap.
    params = DEFAULT_SPACE.snap(
        {d.name: getattr(d, "high", None) for d in DEFAULT_SPACE} | {"is_unbalance": False}
    )
    result = objective(params)
    assert result.status == "ok" and result.rounds < params["num_boost_round"]
    full, cap = lightgbm_params(DEFAULT_SPACE, params, threads=1, seed=42)
    history = lgb.cv(
        full,
        objective.dataset,
        num_boost_round=cap,
        folds=objective.folds,
        callbacks=[lgb.early_stopping(10, verbose=False)],
    )
    assert result.rounds == len(history["valid binary_logloss-mean"])
    assert result.loss == pytest.approx(history["valid binary_logloss-mean"][-1])


def test_second_round_warm_starts_from_champion_then_earlier_top_k(
    settings: Settings, adult_small: pd.DataFrame
) -> None:
    first = _round(settings, adult_small, evals=4)
    store = TrialStore(settings.trials_url)
    earlier = store.leaderboard(round_id=first.round_id, limit=None)
    observations = adult_small.sample(40, random_state=1).drop(columns="income_bracket")
    lines: list[str] = []
    second = _round(
        settings,
        adult_small,
        evals=5,
        trigger="retrain",
        new_observations=observations,
        progress=lines.append,
    )
    trials = store.trials(second.round_id)
    champion_params = ModelStore(settings.models_dir).load(first.version).manifest["params"]
    assert trials[0]["params"] == champion_params and trials[0]["warm"]
    # Then the best earlier trials (top k = 2), the champion's own params not repeated.
    expected = [
        t["params"] for t in earlier if params_key(t["params"]) != params_key(champion_params)
    ][:2]
    assert [t["params"] for t in trials[1:3]] == expected
    assert all(t["warm"] for t in trials[:3]) and not any(t["warm"] for t in trials[3:])
    assert second.warm_start_points == 3
    assert any("[warm start]" in line for line in lines)
    # 40 observations: the newest 8 are held out for the gate, 32 are trained on.
    assert trials[0]["data_rows"] == first_rows(settings) + 32


def first_rows(settings: Settings) -> int:
    return TrialStore(settings.trials_url).rounds()[0]["data_rows"]


def test_cold_round_ignores_history(settings: Settings, adult_small: pd.DataFrame) -> None:
    _round(settings, adult_small, evals=2)
    cold = _round(settings, adult_small, evals=2, warm_start=False)
    trials = TrialStore(settings.trials_url).trials(cold.round_id)
    # Only the space's known-good start point is queued, neither champion nor history.
    assert cold.warm_start_points == 1
    assert trials[0]["params"] == DEFAULT_SPACE.start and trials[0]["warm"]
    assert not trials[1]["warm"]


def test_every_trial_failing_fails_the_round_and_records_it(
    settings: Settings, adult_small: pd.DataFrame
) -> None:
    from streamfit.training.round import TrainingError
    from streamfit.training.space import IntStep, SearchSpace

    broken = SearchSpace(
        (IntStep("num_leaves", 8, 16, 8), IntStep("num_boost_round", 10, 20, 10)),
        fixed={**DEFAULT_SPACE.fixed, "lambda_l1": -1.0},  # LightGBM refuses it
    )
    with pytest.raises(TrainingError, match="none of 2 trials completed"):
        _round(settings, adult_small, evals=2, space=broken)
    store = TrialStore(settings.trials_url)
    assert [t["status"] for t in store.trials()] == ["failed", "failed"]
    assert store.rounds()[0]["status"] == "failed"
    assert ModelStore(settings.models_dir).champion() is None

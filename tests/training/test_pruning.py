"""Optuna pruning through the LightGBM callback stops a hopeless CV run early."""

from __future__ import annotations

import pandas as pd

from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.features import FeaturePipeline
from streamfit.training.objective import CVObjective
from streamfit.training.optimizers import get_optimizer
from streamfit.training.space import IntStep, LogUniform, SearchSpace

SPACE = SearchSpace(
    (LogUniform("learning_rate", 0.0005, 0.3), IntStep("num_boost_round", 100, 300, 100)),
    fixed={"objective": "binary", "metric": "binary_logloss", "verbosity": -1},
)


def _objective(frame: pd.DataFrame) -> CVObjective:
    pipeline = FeaturePipeline(ADULT).fit(frame)
    return CVObjective(
        pipeline.transform(frame),
        frame["label"].to_numpy(),
        pipeline.categorical_features,
        SPACE,
        patience=20,
    )


def test_optuna_prunes_a_hopeless_trial(adult_small: pd.DataFrame) -> None:
    objective = _objective(adult_small)
    optimizer = get_optimizer("optuna", SPACE, seed=0, n_startup=1, pruning=True)
    optimizer.warm_start(
        [
            # Learns slowly enough to still report past the pruner's 50-round warm-up.
            {"learning_rate": 0.03, "num_boost_round": 300},
            {"learning_rate": 0.0005, "num_boost_round": 300},  # barely learns in 300 rounds
        ]
    )
    results = []
    for _ in range(2):
        suggestion = optimizer.ask()
        result = objective(suggestion.params, [optimizer.pruning_callback(suggestion)])
        optimizer.tell(suggestion, result.loss, result.status)
        results.append(result)
    good, hopeless = results
    assert good.status == "ok"
    assert hopeless.status == "pruned"
    # Stopped right after the warm-up (50 rounds), far from the cap, loss kept for the record.
    assert 50 <= hopeless.rounds < 100
    assert hopeless.loss is not None and hopeless.loss > good.loss


def test_without_pruning_the_same_trial_runs_to_the_end(adult_small: pd.DataFrame) -> None:
    objective = _objective(adult_small)
    optimizer = get_optimizer("optuna", SPACE, seed=0, n_startup=1, pruning=False)
    assert optimizer.pruning_callback(optimizer.ask()) is None
    result = objective({"learning_rate": 0.0005, "num_boost_round": 300})
    assert result.status == "ok" and result.rounds == 300

"""Optuna TPE (multivariate, as Optuna 5 defaults) with pruning of unpromising CV runs.

optuna-integration (home of ``LightGBMPruningCallback`` since Optuna 3) is not a dependency, so
:class:`PruningCallback` does its job in a few lines: report the CV log loss mean each boosting
round and stop the run when the pruner says so. It raises the objective's own
:class:`~streamfit.training.objective.TrialPruned`, carrying the last loss and round, so the
objective stays backend-agnostic; this optimiser then tells Optuna the trial was pruned.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from ..objective import TrialPruned
from ..space import Categorical, Dimension, IntStep, LogUniform, SearchSpace, Uniform
from ._base import Optimizer, Suggestion


def _distribution(dimension: Dimension) -> BaseDistribution:
    if isinstance(dimension, LogUniform):
        return FloatDistribution(dimension.low, dimension.high, log=True)
    if isinstance(dimension, Uniform):
        return FloatDistribution(dimension.low, dimension.high)
    if isinstance(dimension, IntStep):
        return IntDistribution(dimension.low, dimension.high, step=dimension.step)
    if isinstance(dimension, Categorical):
        return CategoricalDistribution(list(dimension.choices))
    raise TypeError(f"unsupported dimension {dimension!r}")


def make_sampler(seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    """TPE; with ``constant_liar`` (the default from Optuna 5 on, asked for explicitly) running
    trials count as bad guesses, so workers sharing one study spread out instead of proposing
    the same point."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, constant_liar=True)


def make_pruner(pruning: bool, n_startup: int) -> optuna.pruners.BasePruner:
    """Pruning compares partial CV curves at the same boosting round. Curves at different
    learning rates only separate late, so wait a while (warm-up) before judging, and only once
    a few trials have run to completion."""
    if not pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=n_startup, n_warmup_steps=50, interval_steps=5
    )


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's value of every dimension (an enqueued or retried trial's fixed ones)."""
    params: dict[str, Any] = {}
    for d in space:
        if isinstance(d, LogUniform | Uniform):
            log = isinstance(d, LogUniform)
            params[d.name] = trial.suggest_float(d.name, d.low, d.high, log=log)
        elif isinstance(d, IntStep):
            params[d.name] = trial.suggest_int(d.name, d.low, d.high, step=d.step)
        elif isinstance(d, Categorical):
            params[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        else:
            raise TypeError(f"unsupported dimension {d!r}")
    return params


class PruningCallback:
    """LightGBM callback reporting ``valid binary_logloss-mean`` to an Optuna trial."""

    order = 30  # after early stopping (order 30 too; ties keep registration order)

    def __init__(self, trial: optuna.Trial, interval: int = 5) -> None:
        self.trial = trial
        self.interval = interval

    def __call__(self, env: Any) -> None:
        step = env.iteration + 1
        if step % self.interval:
            return
        for item in env.evaluation_result_list:
            # lgb.cv entries: ("valid", metric, mean, is_higher_better, stdv)
            if item[1] == "binary_logloss":
                loss = float(item[2])
                break
        else:
            return
        self.trial.report(loss, step)
        if self.trial.should_prune():
            raise TrialPruned(loss, step)


class OptunaOptimizer(Optimizer):
    name = "optuna"

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 42,
        n_startup: int = 5,
        pruning: bool = True,
    ) -> None:
        super().__init__(space, seed=seed, n_startup=n_startup)
        self.pruning = pruning
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._distributions = {d.name: _distribution(d) for d in space}
        self._study = optuna.create_study(
            direction="minimize",
            sampler=make_sampler(seed, n_startup),
            pruner=make_pruner(pruning, n_startup),
        )

    def _suggest(self) -> tuple[dict[str, Any], Any]:
        trial = self._study.ask(self._distributions)
        return dict(trial.params), trial

    def _fix(self, params: dict[str, Any]) -> Any:
        self._study.enqueue_trial(params)
        return self._study.ask(self._distributions)

    def pruning_callback(self, suggestion: Suggestion) -> PruningCallback | None:
        return PruningCallback(suggestion.handle) if self.pruning else None

    def _observe(self, suggestion: Suggestion, loss: float | None, status: str) -> None:
        trial = suggestion.handle
        if status == "ok" and loss is not None and math.isfinite(loss):
            self._study.tell(trial, float(loss))
        elif status == "pruned":
            self._study.tell(trial, state=TrialState.PRUNED)
        else:
            self._study.tell(trial, state=TrialState.FAIL)

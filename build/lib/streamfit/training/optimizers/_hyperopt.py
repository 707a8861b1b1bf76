"""Hyperopt TPE through its low-level API, so it fits ask/tell (``fmin`` owns the loop).

Each suggestion comes from ``tpe.suggest`` on a ``Trials`` object holding every told result,
warm-start points included (the same document shape ``generate_trials_to_calculate`` builds).
IntStep dimensions are searched as ``hp.quniform`` over their grid index, so values land on the
grid even when ``low`` is not a multiple of ``step``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK, Domain, Trials, hp, tpe
from hyperopt.fmin import generate_trial

from ..space import Categorical, Dimension, IntStep, LogUniform, SearchSpace, Uniform
from ._base import Optimizer, Suggestion


def _expression(dimension: Dimension) -> Any:
    name = dimension.name
    if isinstance(dimension, LogUniform):
        return hp.loguniform(name, math.log(dimension.low), math.log(dimension.high))
    if isinstance(dimension, Uniform):
        return hp.uniform(name, dimension.low, dimension.high)
    if isinstance(dimension, IntStep):
        return hp.quniform(name, 0, dimension.n_steps, 1)
    if isinstance(dimension, Categorical):
        return hp.choice(name, list(range(len(dimension.choices))))
    raise TypeError(f"unsupported dimension {dimension!r}")


class HyperoptOptimizer(Optimizer):
    name = "hyperopt"

    def __init__(self, space: SearchSpace, *, seed: int = 42, n_startup: int = 5) -> None:
        super().__init__(space, seed=seed, n_startup=n_startup)
        self._domain = Domain(lambda _: 0.0, {d.name: _expression(d) for d in space})
        self._trials = Trials()
        self._rng = np.random.default_rng(seed)

    # Hyperopt's "vals" are what the expressions sample: indices for IntStep and Categorical.
    def _decode(self, vals: dict[str, Any]) -> dict[str, Any]:
        params = {}
        for dimension in self.space:
            value = vals[dimension.name]
            if isinstance(dimension, IntStep):
                value = dimension.at(value)
            elif isinstance(dimension, Categorical):
                value = dimension.choices[int(value)]
            params[dimension.name] = value
        return params

    def _encode(self, params: dict[str, Any]) -> dict[str, Any]:
        vals: dict[str, Any] = {}
        for dimension in self.space:
            value = params[dimension.name]
            if isinstance(dimension, IntStep):
                value = float(dimension.index(value))
            elif isinstance(dimension, Categorical):
                value = dimension.choices.index(dimension.snap(value))
            vals[dimension.name] = value
        return vals

    def _suggest(self) -> tuple[dict[str, Any], Any]:
        tid = self._trials.new_trial_ids(1)
        self._trials.refresh()
        docs = tpe.suggest(
            tid,
            self._domain,
            self._trials,
            int(self._rng.integers(2**31 - 1)),
            n_startup_jobs=self.n_startup,
            verbose=False,  # else INFO lines per suggestion in the trainer log
        )
        doc = docs[0]
        vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
        return self._decode(vals), doc

    def _fix(self, params: dict[str, Any]) -> Any:
        (tid,) = self._trials.new_trial_ids(1)
        return generate_trial(tid, self._encode(params))

    def _observe(self, suggestion: Suggestion, loss: float | None, status: str) -> None:
        doc = suggestion.handle
        doc["state"] = JOB_STATE_DONE
        # TPE learns from "ok" results only; a pruned CV run's partial loss is not comparable.
        if status == "ok" and loss is not None:
            doc["result"] = {"loss": float(loss), "status": STATUS_OK}
        else:
            doc["result"] = {"status": STATUS_FAIL}
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()

"""scikit-optimize's Gaussian-process optimiser (the backend HyperparameterHunter used).

IntStep dimensions become ``Integer(0, n_steps)`` over the grid *index*: the GP sees an ordered
integer, not an unordered categorical (the source article's complaint), and values map back to
``low + index * step``.
"""

from __future__ import annotations

import warnings
from typing import Any

from skopt import Optimizer as GPOptimizer
from skopt.space import Categorical as SkCategorical
from skopt.space import Integer, Real

from ..space import Categorical, Dimension, IntStep, LogUniform, SearchSpace, Uniform
from ._base import Optimizer, Suggestion


def _dimension(dimension: Dimension) -> Any:
    name = dimension.name
    if isinstance(dimension, LogUniform):
        return Real(dimension.low, dimension.high, prior="log-uniform", name=name)
    if isinstance(dimension, Uniform):
        return Real(dimension.low, dimension.high, name=name)
    if isinstance(dimension, IntStep):
        return Integer(0, dimension.n_steps, name=name)
    if isinstance(dimension, Categorical):
        return SkCategorical(list(dimension.choices), name=name)
    raise TypeError(f"unsupported dimension {dimension!r}")


class SkoptOptimizer(Optimizer):
    name = "skopt"

    def __init__(self, space: SearchSpace, *, seed: int = 42, n_startup: int = 5) -> None:
        super().__init__(space, seed=seed, n_startup=n_startup)
        self._optimizer = GPOptimizer(
            [_dimension(d) for d in space],
            base_estimator="GP",
            n_initial_points=n_startup,
            acq_func="gp_hedge",
            random_state=seed,
        )
        self._worst = 0.0

    def _to_point(self, params: dict[str, Any]) -> list[Any]:
        point = []
        for dimension in self.space:
            value = params[dimension.name]
            point.append(dimension.index(value) if isinstance(dimension, IntStep) else value)
        return point

    def _suggest(self) -> tuple[dict[str, Any], Any]:
        with warnings.catch_warnings():
            # "The objective has been evaluated at point ... before": skopt then picks a random
            # point itself, which is what we want.
            warnings.simplefilter("ignore", UserWarning)
            point = self._optimizer.ask()
        params = {}
        for dimension, value in zip(self.space, point, strict=True):
            params[dimension.name] = (
                dimension.at(value) if isinstance(dimension, IntStep) else value
            )
        return params, point

    def _observe(self, suggestion: Suggestion, loss: float | None, status: str) -> None:
        if status == "ok" and loss is not None:
            value = float(loss)
            self._worst = max(self._worst, value)
        elif status == "pruned" and loss is not None:
            # A GP cannot skip a point it asked for; a pruned run was heading nowhere good, so
            # it gets at least the worst loss seen so far.
            value = max(float(loss), self._worst)
        else:
            if self._worst == 0.0:
                return  # nothing sensible to report yet; skopt just re-asks elsewhere
            value = self._worst
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._optimizer.tell(self._to_point(suggestion.params), value)

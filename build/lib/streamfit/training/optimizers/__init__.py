"""Search backends behind one ask/tell interface; :func:`get_optimizer` picks one by name.

>>> from streamfit.training.space import SearchSpace, IntStep
>>> opt = get_optimizer("hyperopt", SearchSpace((IntStep("n", 0, 10, 5),)), seed=1)
>>> opt.warm_start([{"n": 4}])
>>> opt.ask().params
{'n': 5}
"""

from __future__ import annotations

from ..space import DEFAULT_SPACE, SearchSpace
from ._base import Optimizer, Suggestion

OPTIMIZERS = ("hyperopt", "skopt", "optuna")
DEFAULT_OPTIMIZER = "hyperopt"


def get_optimizer(
    name: str | None = None,
    space: SearchSpace = DEFAULT_SPACE,
    *,
    seed: int = 42,
    n_startup: int = 5,
    pruning: bool = True,
) -> Optimizer:
    """``None`` gives the default (Hyperopt TPE, as in the source design).

    ``pruning`` only concerns Optuna, the one backend that prunes CV runs.
    """
    name = name or DEFAULT_OPTIMIZER
    # Imported on demand: each backend pulls in a sizeable library.
    if name == "hyperopt":
        from ._hyperopt import HyperoptOptimizer

        return HyperoptOptimizer(space, seed=seed, n_startup=n_startup)
    if name == "skopt":
        from ._skopt import SkoptOptimizer

        return SkoptOptimizer(space, seed=seed, n_startup=n_startup)
    if name == "optuna":
        from ._optuna import OptunaOptimizer

        return OptunaOptimizer(space, seed=seed, n_startup=n_startup, pruning=pruning)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


__all__ = ["DEFAULT_OPTIMIZER", "OPTIMIZERS", "Optimizer", "Suggestion", "get_optimizer"]

"""One search-space definition, translated to every optimiser backend.

Four kinds of dimension cover LightGBM's hyper-parameters: :class:`Uniform`,
:class:`LogUniform`, :class:`IntStep` (integers ``low, low + step, ..., high``) and
:class:`Categorical`. The space is kept *identical* across rounds on purpose: warm starts reuse
earlier trials only when :attr:`SearchSpace.hash` matches, and Optuna's multivariate TPE only
models parameters whose distribution is the same in every trial.

>>> space = SearchSpace((IntStep("num_leaves", 8, 32, 8), Categorical("flag", (False, True))))
>>> space.snap({"num_leaves": 13.7, "flag": True})
{'num_leaves': 16, 'flag': True}
>>> space["num_leaves"].values()
[8, 16, 24, 32]
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Uniform:
    name: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"{self.name}: low must be below high, got {self.low}, {self.high}")

    def snap(self, value: Any) -> float:
        return float(min(max(float(value), self.low), self.high))


@dataclass(frozen=True)
class LogUniform(Uniform):
    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low <= 0:
            raise ValueError(f"{self.name}: a log-uniform range must be positive, got {self.low}")


@dataclass(frozen=True)
class IntStep:
    """Integers on the grid ``low, low + step, ..., high`` (``high - low`` divisible by step)."""

    name: str
    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.step < 1 or not self.low < self.high or (self.high - self.low) % self.step:
            raise ValueError(
                f"{self.name}: need low < high and (high - low) divisible by step >= 1, "
                f"got {self.low}, {self.high}, {self.step}"
            )

    @property
    def n_steps(self) -> int:
        """Index of the last grid point (the grid has ``n_steps + 1`` values)."""
        return (self.high - self.low) // self.step

    def at(self, index: Any) -> int:
        """The grid value at a (possibly fractional, possibly out of range) index."""
        i = min(max(round(float(index)), 0), self.n_steps)
        return self.low + i * self.step

    def index(self, value: Any) -> int:
        return min(max(round((float(value) - self.low) / self.step), 0), self.n_steps)

    def snap(self, value: Any) -> int:
        return self.at(self.index(value))

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class Categorical:
    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"{self.name}: a categorical needs at least two choices")

    def snap(self, value: Any) -> Any:
        for choice in self.choices:  # map numpy scalars (np.True_) back to the plain choice
            if value == choice:
                return choice
        raise ValueError(f"{self.name}: {value!r} is not one of {self.choices}")


Dimension = Uniform | LogUniform | IntStep | Categorical


@dataclass(frozen=True)
class SearchSpace:
    """The searched dimensions plus the fixed LightGBM parameters every trial shares.

    ``start`` is an optional sensible point a cold round evaluates first, so even a small
    budget never does worse than a known-good configuration. It is not part of the hash.
    """

    dimensions: tuple[Dimension, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    start: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        names = [d.name for d in self.dimensions]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate dimension names in {names}")
        clash = set(names) & set(self.fixed)
        if clash:
            raise ValueError(f"parameters both searched and fixed: {sorted(clash)}")
        if self.start is not None and not self.contains(self.start):
            raise ValueError(f"start point {dict(self.start)} is not on the space")

    def __iter__(self) -> Iterator[Dimension]:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __getitem__(self, name: str) -> Dimension:
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def snap(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Clip and round ``params`` onto the space, with plain Python types; KeyError if any
        dimension is missing (extra keys are dropped)."""
        return {d.name: d.snap(params[d.name]) for d in self.dimensions}

    def contains(self, params: Mapping[str, Any]) -> bool:
        try:
            return self.snap(params) == {n: params[n] for n in self.names}
        except (KeyError, TypeError, ValueError):
            return False

    @property
    def hash(self) -> str:
        """Stable across processes and versions: the JSON of every dimension and fixed value."""
        spec = {
            "dimensions": [{"kind": type(d).__name__, **_jsonable(d)} for d in self.dimensions],
            "fixed": dict(sorted(self.fixed.items())),
        }
        text = json.dumps(spec, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(dimension: Dimension) -> dict[str, Any]:
    values = dict(dimension.__dict__)
    if "choices" in values:
        values["choices"] = list(values["choices"])
    return values


CROSS_GAIN = "cross_gain_scale"


def params_key(params: Mapping[str, Any]) -> str:
    """Canonical text of a parameter set, for de-duplication (floats to 10 significant digits)."""

    def norm(value: Any) -> Any:
        if isinstance(value, float) and math.isfinite(value):
            return float(f"{value:.10g}")
        return value

    return json.dumps({k: norm(v) for k, v in sorted(params.items())})


# Ranges chosen on adult (benchmarks/training.py, docs/benchmarks/training.md): they hold the good
# region (learning rate 0.03-0.1, 16-48 leaves, colsample 0.4-0.7, little or no bagging) while
# keeping one 3-fold CV at 1 thread to a few seconds; rates below 0.025 cost 3x the time for
# <0.001 log loss.
DEFAULT_SPACE = SearchSpace(
    dimensions=(
        LogUniform("learning_rate", 0.025, 0.15),
        # A cap only: early stopping picks the real number, recorded per trial as "rounds".
        IntStep("num_boost_round", 200, 1500, 100),
        IntStep("num_leaves", 8, 64, 8),
        IntStep("min_child_samples", 10, 150, 10),
        LogUniform("min_child_weight", 1e-3, 3.0),
        Uniform("colsample_bytree", 0.3, 0.9),
        Uniform("subsample", 0.7, 1.0),
        LogUniform("reg_alpha", 1e-3, 10.0),
        LogUniform("reg_lambda", 1e-3, 10.0),
        LogUniform("cat_smooth", 1.0, 200.0),
        IntStep("min_data_per_group", 20, 500, 20),
        # Weight of the split gain of the two crossed columns (LightGBM feature_contri). With
        # ~160 levels each they overfit as categoricals: on adult, dropping them (weight 0)
        # improves adult.test log loss by ~0.002, so the search may scale them down.
        Uniform(CROSS_GAIN, 0.0, 1.0),
        # Kept searchable because the reference design searched it. It re-weights the classes
        # and so wrecks probability calibration (adult.test log loss 0.314 with it vs 0.276
        # without): on a log-loss objective the search learns False, and old trials stay
        # comparable because the space does not change.
        Categorical("is_unbalance", (False, True)),
    ),
    fixed={
        "objective": "binary",
        "metric": "binary_logloss",
        "bagging_freq": 1,  # subsample only takes effect with bagging_freq > 0
        "verbosity": -1,
        "force_col_wise": True,  # 16 columns, many rows: skip LightGBM's row/col-wise probe
        "feature_pre_filter": False,  # min_child_samples varies across trials
    },
    # From exploratory 3-fold CV runs on adult.data (CV log loss ~0.277): moderate rate and
    # leaves, half the columns per tree, strong smoothing, crossed columns switched off.
    start={
        "learning_rate": 0.05,
        "num_boost_round": 1000,
        "num_leaves": 24,
        "min_child_samples": 50,
        "min_child_weight": 0.001,
        "colsample_bytree": 0.5,
        "subsample": 1.0,
        "reg_alpha": 0.001,
        "reg_lambda": 0.001,
        "cat_smooth": 100.0,
        "min_data_per_group": 500,
        CROSS_GAIN: 0.0,
        "is_unbalance": False,
    },
)


def lightgbm_params(
    space: SearchSpace,
    params: Mapping[str, Any],
    *,
    threads: int,
    seed: int,
    feature_names: Sequence[str] = (),
    task: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    """Full LightGBM parameters for a trial and its boosting-round cap.

    ``task``: the task's objective and metric (``TaskRules.lightgbm_params``), over the space's
    binary ones; ``is_unbalance`` re-weights two classes, so it applies to binary only.
    ``cross_gain_scale`` is not a LightGBM parameter: it becomes ``feature_contri`` (1 for every
    column, the scale for crossed columns, recognised by the ``*`` in their names).
    """
    full = {**space.fixed, **params, **(task or {}), "num_threads": threads, "seed": seed}
    if full.get("objective") != "binary":
        full.pop("is_unbalance", None)
    cap = int(full.pop("num_boost_round", 1000))
    if CROSS_GAIN in full:
        scale = float(full.pop(CROSS_GAIN))
        if feature_names:
            full["feature_contri"] = [scale if "*" in n else 1.0 for n in feature_names]
    return full, cap


def describe(params: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """Short, readable one-line form of a parameter set (for progress lines)."""
    names = names or list(params)
    parts = []
    for name in names:
        value = params[name]
        parts.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


__all__ = [
    "DEFAULT_SPACE",
    "Categorical",
    "Dimension",
    "IntStep",
    "LogUniform",
    "SearchSpace",
    "Uniform",
    "describe",
    "lightgbm_params",
    "params_key",
]

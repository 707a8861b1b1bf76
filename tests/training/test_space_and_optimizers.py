"""The search space and the contract every optimiser backend honours (no training needed)."""

from __future__ import annotations

import math

import pytest

from streamfit.training.optimizers import OPTIMIZERS, get_optimizer
from streamfit.training.space import (
    DEFAULT_SPACE,
    Categorical,
    IntStep,
    LogUniform,
    SearchSpace,
    Uniform,
)

# low is not a multiple of step on purpose: values must sit on low + k * step.
SPACE = SearchSpace(
    (
        IntStep("leaves", 7, 67, 12),
        IntStep("cap", 200, 1200, 100),
        LogUniform("lr", 0.01, 0.3),
        Uniform("frac", 0.5, 1.0),
        Categorical("unbalanced", (False, True)),
    )
)


def _loss(params: dict) -> float:
    # A smooth bowl with its minimum inside the space; the value does not matter much.
    return (
        (params["leaves"] - 31) ** 2 / 900
        + math.log(params["lr"] / 0.05) ** 2
        + (0.5 if params["unbalanced"] else 0.0)
    )


@pytest.fixture(params=OPTIMIZERS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_intstep_values_are_ints_on_the_grid(backend: str) -> None:
    optimizer = get_optimizer(backend, SPACE, seed=0, n_startup=3)
    for _ in range(12):
        suggestion = optimizer.ask()
        for name in ("leaves", "cap"):
            value = suggestion.params[name]
            dimension = SPACE[name]
            assert type(value) is int, (backend, name, value)
            assert value in dimension.values(), (backend, name, value)
        assert type(suggestion.params["unbalanced"]) is bool
        assert 0.01 <= suggestion.params["lr"] <= 0.3
        optimizer.tell(suggestion, _loss(suggestion.params))


def test_warm_start_points_come_first_and_inform_the_backend(backend: str) -> None:
    optimizer = get_optimizer(backend, SPACE, seed=0, n_startup=3)
    points = [
        {"leaves": 31, "cap": 500, "lr": 0.05, "frac": 0.8, "unbalanced": False},
        {"leaves": 43, "cap": 700, "lr": 0.1, "frac": 0.9, "unbalanced": True},
    ]
    optimizer.warm_start(points)
    for point in points:
        suggestion = optimizer.ask()
        assert suggestion.warm
        assert suggestion.params == point
        optimizer.tell(suggestion, _loss(suggestion.params))
    suggestion = optimizer.ask()
    assert not suggestion.warm
    assert suggestion.params not in points
    assert optimizer.n_told == 2


def test_failed_and_pruned_trials_are_accepted(backend: str) -> None:
    optimizer = get_optimizer(backend, SPACE, seed=1, n_startup=2)
    statuses = ["failed", "ok", "pruned", "ok", "ok", "failed", "ok"]
    for status in statuses:
        suggestion = optimizer.ask()
        loss = None if status == "failed" else _loss(suggestion.params)
        optimizer.tell(suggestion, loss, status)
    assert optimizer.n_told == len(statuses)


def test_space_snaps_and_hashes_stably() -> None:
    assert SPACE["leaves"].values() == [7, 19, 31, 43, 55, 67]
    assert (
        SPACE.snap({"leaves": 33.9, "cap": 10_000, "lr": 1.0, "frac": 0.7, "unbalanced": 1})[
            "leaves"
        ]
        == 31
    )
    assert SPACE.hash == SearchSpace(SPACE.dimensions).hash
    wider = SearchSpace((IntStep("leaves", 7, 79, 12), *SPACE.dimensions[1:]))
    assert wider.hash != SPACE.hash
    # The default space keeps is_unbalance searchable but with the calibrated choice first.
    assert DEFAULT_SPACE["is_unbalance"].choices == (False, True)
    with pytest.raises(ValueError, match="divisible"):
        IntStep("bad", 0, 10, 3)


def test_unknown_optimizer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'grid'"):
        get_optimizer("grid")
    assert get_optimizer(None).name == "hyperopt"

"""Training: search space, optimisers, CV objective, trial store, tracking, rounds and the gate.

The public names load lazily: the trainer service imports this package at start-up, and
MLflow and the optimiser libraries take seconds to import.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "run_round": ".round",
    "RoundOutcome": ".round",
    "TrainingError": ".round",
    "GateDecision": ".gate",
    "leaderboard_command": ".trials",
    "format_leaderboard": ".trials",
    "TrialStore": ".trials",
    "DEFAULT_SPACE": ".space",
    "SearchSpace": ".space",
    "get_optimizer": ".optimizers",
    "get_tracker": ".tracking",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)


__all__ = sorted(_EXPORTS)

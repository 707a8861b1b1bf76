"""The optimiser interface: ask for parameters, tell the result.

Warm-start points are queued with :meth:`Optimizer.warm_start` and come out of :meth:`ask` first,
exactly as given (snapped onto the space); their results are told like any other, so the
backend's model is informed by them before it proposes anything itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..space import SearchSpace


@dataclass
class Suggestion:
    number: int  # 0-based position within the round
    params: dict[str, Any]
    warm: bool = False  # came from the warm-start queue
    handle: Any = field(default=None, repr=False)  # backend's own token (trial id, optuna trial)


class Optimizer(ABC):
    """Base class of every search backend.

    Subclasses implement :meth:`_suggest` (propose a new point) and :meth:`_observe` (learn a
    result); :meth:`_fix` lets a backend register a warm-start point before it is evaluated.
    """

    name: str = "base"

    def __init__(self, space: SearchSpace, *, seed: int = 42, n_startup: int = 5) -> None:
        if n_startup < 1:
            raise ValueError(f"n_startup must be at least 1, got {n_startup}")
        self.space = space
        self.seed = seed
        self.n_startup = n_startup
        self.n_asked = 0
        self.n_told = 0
        self._queue: deque[dict[str, Any]] = deque()

    def warm_start(self, points: Iterable[Mapping[str, Any]]) -> None:
        """Queue points to evaluate before any suggestion of the backend's own."""
        self._queue.extend(self.space.snap(p) for p in points)

    @property
    def pending_warm(self) -> int:
        return len(self._queue)

    def ask(self) -> Suggestion:
        if self._queue:
            params = self._queue.popleft()
            suggestion = Suggestion(self.n_asked, params, warm=True, handle=self._fix(params))
        else:
            params, handle = self._suggest()
            suggestion = Suggestion(self.n_asked, self.space.snap(params), handle=handle)
        self.n_asked += 1
        return suggestion

    def tell(self, suggestion: Suggestion, loss: float | None, status: str = "ok") -> None:
        """Report a trial: ``status`` is "ok", "pruned" (loss is the last value seen) or
        "failed" (loss is None)."""
        if status not in ("ok", "pruned", "failed"):
            raise ValueError(f"status must be ok, pruned or failed, got {status!r}")
        self._observe(suggestion, loss, status)
        self.n_told += 1

    def pruning_callback(self, suggestion: Suggestion) -> Callable[..., None] | None:
        """A LightGBM callback that may stop this trial early; None when not pruning."""
        return None

    @abstractmethod
    def _suggest(self) -> tuple[dict[str, Any], Any]:
        """Propose new parameters; return them with a backend token."""

    @abstractmethod
    def _observe(self, suggestion: Suggestion, loss: float | None, status: str) -> None:
        """Learn the result of a suggested or warm-start trial."""

    def _fix(self, params: dict[str, Any]) -> Any:
        """Hook: register a warm-start point about to be evaluated; return a token."""
        return None

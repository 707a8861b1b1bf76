"""Model runtimes: the compiled copies of a LightGBM model the predictor can serve.

``get_runtime(name)`` gives one runtime; ``runtimes_for(setting)`` the runtimes a
``model_runtime`` setting tries, in order. ``"auto"`` (the default) tries the fastest first, as
measured by ``benchmarks/runtimes.py`` (docs/benchmarks/runtimes.md), and the next one when it
is not installed or refused.
"""

from __future__ import annotations

from ...config import MODEL_RUNTIMES
from ._base import ModelRuntime, Predict, compiler
from ._lleaves import LleavesRuntime
from ._tl2cgen import Tl2cgenRuntime

# The one registry, fastest first: "auto" tries them in this order.
_RUNTIMES: dict[str, type[ModelRuntime]] = {
    LleavesRuntime.name: LleavesRuntime,
    Tl2cgenRuntime.name: Tl2cgenRuntime,
}
AUTO = "auto"
DEFAULT_RUNTIME = Tl2cgenRuntime.name  # the safe default of get_runtime(None): served longest
if (AUTO, *_RUNTIMES) != MODEL_RUNTIMES:  # config.py validates settings against its copy
    raise ImportError(f"config.MODEL_RUNTIMES {MODEL_RUNTIMES} differs from {tuple(_RUNTIMES)}")


def get_runtime(name: str | None = None) -> ModelRuntime:
    """The runtime called ``name``; ``None`` gives the safe default (tl2cgen)."""
    try:
        return _RUNTIMES[name or DEFAULT_RUNTIME]()
    except KeyError:
        choices = MODEL_RUNTIMES[1:]
        raise ValueError(f"unknown model runtime {name!r}; choose one of {choices}") from None


def runtimes_for(setting: str = AUTO) -> list[ModelRuntime]:
    """The runtimes a ``model_runtime`` setting tries, in order."""
    if setting == AUTO:
        return [runtime() for runtime in _RUNTIMES.values()]
    return [get_runtime(setting)]


__all__ = [
    "AUTO",
    "MODEL_RUNTIMES",
    "DEFAULT_RUNTIME",
    "ModelRuntime",
    "Predict",
    "compiler",
    "get_runtime",
    "runtimes_for",
]

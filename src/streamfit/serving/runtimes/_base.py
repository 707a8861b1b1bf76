"""The model runtime family: how a bundle's LightGBM model is turned into a faster predictor.

A runtime builds a library from ``model.txt`` (in a child process: see
:mod:`streamfit.serving._build`) and loads it back as a function from a float64 feature matrix
to probabilities. Everything around that (the cache beside the bundle, its sidecar key and
digest, the check against LightGBM before a swap, the time bound) is the runtime-independent
path of :mod:`streamfit.serving._compiled`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


class ModelRuntime(ABC):
    """One way to run a LightGBM model; subclasses are private (``_tl2cgen``, ``_lleaves``)."""

    name: ClassVar[str]
    library_file: ClassVar[str]  # the derived cache's file name inside the bundle's directory

    def missing(self) -> str | None:
        """Why this runtime cannot run on this machine (not installed, no compiler...), or
        None when it can. Checked before any build is started."""
        return None

    def versions(self) -> dict[str, str]:
        """The tool versions a library depends on: part of its cache key."""
        return {}

    @abstractmethod
    def build(self, model_file: Path, library: Path, threads: int) -> None:
        """Build ``library`` from ``model_file`` (runs in the build's child process)."""

    @abstractmethod
    def load(self, library: Path, model_file: Path) -> Predict:
        """Load a built library: a function from a float64 matrix (rows x features) to one
        probability per row, single-threaded."""

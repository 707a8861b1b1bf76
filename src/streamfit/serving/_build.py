"""The child process of a compiled model's build (see :mod:`streamfit.serving._compiled`):
LightGBM text model -> a runtime's library (tl2cgen: C and gcc; lleaves: LLVM).

    python -m streamfit.serving._build RUNTIME MODEL_FILE LIBRARY THREADS
    python -m streamfit.serving._build --probe RUNTIME MODEL_FILE LIBRARY 1

``--probe`` loads an existing library and predicts one row instead: a library that cannot be
loaded may abort the process that tries (see ``_compiled._probe_in_child``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._compiled import _route_native_logs
from .runtimes import MODEL_RUNTIMES, get_runtime


def build_library(runtime: str, model_file: Path, library: Path, threads: int) -> None:
    _route_native_logs()
    get_runtime(runtime).build(model_file, library, threads)


def probe_library(runtime: str, model_file: Path, library: Path) -> None:
    import lightgbm

    features = lightgbm.Booster(model_file=str(model_file)).num_feature()
    get_runtime(runtime).load(library, model_file)(np.zeros((1, features)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", action="store_true", help="load and run, do not build")
    parser.add_argument("runtime", choices=MODEL_RUNTIMES[1:])
    parser.add_argument("model_file", type=Path)
    parser.add_argument("library", type=Path)
    parser.add_argument("threads", type=int)
    arguments = parser.parse_args()
    if arguments.probe:
        probe_library(arguments.runtime, arguments.model_file, arguments.library)
    else:
        build_library(arguments.runtime, arguments.model_file, arguments.library, arguments.threads)

"""The child process of a compiled model's build (see :mod:`streamfit.serving._compiled`):
LightGBM text model -> a runtime's library (tl2cgen: C and gcc; lleaves: LLVM, then gcc links it).

    python -m streamfit.serving._build RUNTIME MODEL_FILE LIBRARY THREADS
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._compiled import _route_native_logs
from .runtimes import MODEL_RUNTIMES, get_runtime


def build_library(runtime: str, model_file: Path, library: Path, threads: int) -> None:
    _route_native_logs()
    get_runtime(runtime).build(model_file, library, threads)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", choices=MODEL_RUNTIMES[1:])
    parser.add_argument("model_file", type=Path)
    parser.add_argument("library", type=Path)
    parser.add_argument("threads", type=int)
    arguments = parser.parse_args()
    build_library(arguments.runtime, arguments.model_file, arguments.library, arguments.threads)

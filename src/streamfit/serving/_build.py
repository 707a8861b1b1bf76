"""The child process of a compiled model's build (see :mod:`streamfit.serving._compiled`):
LightGBM text model -> a runtime's library (tl2cgen: C and gcc; lleaves: LLVM, then gcc links it).

    python -m streamfit.serving._build RUNTIME MODEL_FILE LIBRARY THREADS PARENT_PID

The build dies with its parent: a predictor that exits mid-build (its compiler thread is a
daemon, which cannot kill the child on the way out) leaves no build, nor any gcc it started,
running on behind it.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

from ._compiled import _route_native_logs
from .runtimes import MODEL_RUNTIMES, get_runtime

_PARENT_CHECK_S = 1.0


def build_library(runtime: str, model_file: Path, library: Path, threads: int) -> None:
    _route_native_logs()
    get_runtime(runtime).build(model_file, library, threads)


def die_with(parent: int) -> None:
    """Kill this process group (the build, gcc included) once ``parent`` is gone. A thread,
    not a signal handler: the compilers run in long C calls, which hold Python's handlers back
    but release the GIL."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", choices=MODEL_RUNTIMES[1:])
    parser.add_argument("model_file", type=Path)
    parser.add_argument("library", type=Path)
    parser.add_argument("threads", type=int)
    parser.add_argument("parent", type=int)
    arguments = parser.parse_args()
    die_with(arguments.parent)
    build_library(arguments.runtime, arguments.model_file, arguments.library, arguments.threads)

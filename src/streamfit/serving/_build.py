"""The child process of a compiled model's build (see :mod:`streamfit.serving._compiled`):
LightGBM text model -> treelite -> C (tl2cgen) -> gcc -> a shared library.

    python -m streamfit.serving._build MODEL_FILE LIBRARY THREADS
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._compiled import _route_native_logs, compiler


def build_library(model_file: Path, library: Path, threads: int) -> None:
    import lightgbm
    import tl2cgen
    import treelite

    _route_native_logs()
    model = treelite.frontend.from_lightgbm(lightgbm.Booster(model_file=str(model_file)))
    tl2cgen.export_lib(
        model,
        toolchain=Path(compiler() or "gcc").name,
        libpath=str(library),
        params={"parallel_comp": 8},
        nthread=threads,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file", type=Path)
    parser.add_argument("library", type=Path)
    parser.add_argument("threads", type=int)
    arguments = parser.parse_args()
    build_library(arguments.model_file, arguments.library, arguments.threads)

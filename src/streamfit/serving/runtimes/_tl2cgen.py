"""treelite + tl2cgen: the model as generated C, compiled by gcc into a shared library."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._base import ModelRuntime, Predict, check_elf_file, compiler

# -O1 with quantized thresholds: 2.7-3.3x LightGBM at batches of 100-1000 where the former -O3
# build was 1.1-1.7x, in less build time (benchmarks/runtimes.py); branch annotations added
# nothing measurable.
_PARAMS = {"parallel_comp": 8, "quantize": 1}
_OPTIMISATION = "-O1"
_OPTIONS = f"{_PARAMS} {_OPTIMISATION}"


class Tl2cgenRuntime(ModelRuntime):
    name = "tl2cgen"
    library_file = "model.so"

    def missing(self) -> str | None:
        if compiler() is None:
            return f"no C compiler found ({os.environ.get('CC', 'gcc')} not on PATH)"
        try:
            import tl2cgen  # noqa: F401
            import treelite  # noqa: F401
        except ImportError as exc:
            return f"treelite/tl2cgen not installed: {exc}"
        return None

    def versions(self) -> dict[str, str]:
        import tl2cgen
        import treelite

        return {
            "treelite": treelite.__version__,
            "tl2cgen": tl2cgen.__version__,
            "options": _OPTIONS,  # a library built with other options is rebuilt
        }

    def build(self, model_file: Path, library: Path, threads: int) -> None:
        import lightgbm
        import tl2cgen
        import treelite

        model = treelite.frontend.from_lightgbm(lightgbm.Booster(model_file=str(model_file)))
        tl2cgen.export_lib(
            model,
            toolchain=Path(compiler() or "gcc").name,
            libpath=str(library),
            params=_PARAMS,
            nthread=threads,
            options=[_OPTIMISATION],
        )

    def load(self, library: Path, model_file: Path) -> Predict:
        import tl2cgen

        check_elf_file(library)  # dlopen of a truncated library dies of SIGBUS
        predictor = tl2cgen.Predictor(str(library), nthread=1)

        def predict(features: np.ndarray) -> np.ndarray:
            matrix = tl2cgen.DMatrix(np.ascontiguousarray(features, dtype=np.float64))
            out = predictor.predict(matrix).reshape(len(features), -1)  # rows x (1 or classes)
            return out[:, 0] if out.shape[1] == 1 else out

        return predict

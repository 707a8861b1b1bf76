"""lleaves: the model compiled by LLVM (through llvmlite) into machine code, linked by the C
compiler into a shared library the predictor ``dlopen``s.

Only the build (a child process) runs LLVM. lleaves' own loader would link the object file in
the predictor's memory with llvmlite's JIT, and LLVM's start-up and each engine's copies would
stay in the predictor's heap. The same machine code in a shared library is file-backed pages,
unmapped when the model is let go, and predicts as fast (docs/benchmarks/soak.md).

lleaves 1.3 builds with llvmlite's legacy pass manager, which llvmlite 0.45 removed: the
dependency is pinned below it (pyproject.toml), and a newer llvmlite is reported as missing
rather than failing inside a build.
"""

from __future__ import annotations

import ctypes
import importlib.util
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ._base import ModelRuntime, Predict, SharedLibrary, check_elf_file, compiler

_ENTRY = "forest_root"  # lleaves' default name for the compiled forest
# lleaves inlines each block of 34 trees into one function, and LLVM's time for a block grows
# far faster than its trees' size: trees of up to this many leaves on average (LightGBM's default
# is 31) are inlined; larger ones are built each a function of its own, which predicts as fast for
# them and builds in a fraction of the time (figures: docs/benchmarks/runtimes.md).
_INLINED_TREE_LEAVES = 32
# (rows, probabilities, first row, end row): the GIL is released during the call
_FOREST = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


class LleavesRuntime(ModelRuntime):
    name = "lleaves"
    library_file = "model.lleaves.so"

    def refuses(self, task: str) -> str | None:
        if task == "multiclass":
            return "lleaves 1.3 aborts the process on a multiclass model"
        return None

    def missing(self) -> str | None:
        # Asked in the predictor: found by the package metadata, without importing llvmlite
        # (which would load LLVM into a process that never runs it).
        for package in ("lleaves", "llvmlite"):
            if importlib.util.find_spec(package) is None:
                return f"lleaves not installed: no module named {package!r}"
        if _release(version("llvmlite")) >= (0, 45):
            return f"llvmlite {version('llvmlite')} is too new for lleaves (needs < 0.45)"
        if compiler() is None:
            return "no C compiler found to link lleaves' object file (gcc not on PATH)"
        return None

    def versions(self) -> dict[str, str]:
        try:
            return {"lleaves": version("lleaves"), "llvmlite": version("llvmlite")}
        except PackageNotFoundError:
            return {}

    def build(self, model_file: Path, library: Path, threads: int) -> None:
        import lleaves

        objects = library.with_suffix(".o")
        # lleaves loads an existing cache file instead of compiling: start from none.
        objects.unlink(missing_ok=True)
        try:
            lleaves.Model(model_file=str(model_file)).compile(
                cache=str(objects), finline=inlines(model_file)
            )
            command = [compiler() or "gcc", "-shared", "-o", str(library), str(objects), "-lm"]
            linked = subprocess.run(command, capture_output=True, text=True)
            if linked.returncode != 0:
                raise RuntimeError(f"linking lleaves' object file failed: {linked.stderr.strip()}")
        finally:
            objects.unlink(missing_ok=True)

    def load(self, library: Path, model_file: Path) -> Predict:
        check_elf_file(library)  # dlopen of a truncated library dies of SIGBUS
        return _CompiledForest(library)


def inlines(model_file: Path) -> bool:
    """Whether lleaves inlines this LightGBM text model's trees: trees of at most
    ``_INLINED_TREE_LEAVES`` leaves on average."""
    with model_file.open() as model:
        leaves = [int(line[11:]) for line in model if line.startswith("num_leaves=")]
    return sum(leaves) <= _INLINED_TREE_LEAVES * len(leaves)


class _CompiledForest:
    """The forest's entry point in its shared library, which stays open while this lives."""

    def __init__(self, library: Path) -> None:
        self._library = SharedLibrary(library)
        self._forest = self._library.function(_ENTRY, _FOREST)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(features, dtype=np.float64)
        probabilities = np.zeros(len(rows))
        self._forest(rows.ctypes.data, probabilities.ctypes.data, 0, len(rows))
        return probabilities

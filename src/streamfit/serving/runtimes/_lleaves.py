"""lleaves: the model compiled by LLVM (through llvmlite) into machine code, no C compiler.

lleaves 1.3 builds with llvmlite's legacy pass manager, which llvmlite 0.45 removed: the
dependency is pinned below it (pyproject.toml), and a newer llvmlite is reported as missing
rather than failing inside a build.
"""

from __future__ import annotations

from pathlib import Path

from ._base import ModelRuntime, Predict, check_elf_file


class LleavesRuntime(ModelRuntime):
    name = "lleaves"
    library_file = "model.lleaves.o"  # an object file llvmlite's JIT links in at load

    def missing(self) -> str | None:
        try:
            import lleaves  # noqa: F401
            import llvmlite.binding
        except ImportError as exc:
            return f"lleaves not installed: {exc}"
        if not hasattr(llvmlite.binding, "PassManagerBuilder"):
            return f"llvmlite {llvmlite.__version__} is too new for lleaves (needs < 0.45)"
        return None

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"lleaves": version("lleaves"), "llvmlite": version("llvmlite")}

    def build(self, model_file: Path, library: Path, threads: int) -> None:
        import lleaves

        # lleaves loads an existing cache file instead of compiling: start from none.
        library.unlink(missing_ok=True)
        lleaves.Model(model_file=str(model_file)).compile(cache=str(library))

    def load(self, library: Path, model_file: Path) -> Predict:
        import lleaves

        check_elf_file(library)  # LLVM aborts the process on an object file it cannot read
        model = lleaves.Model(model_file=str(model_file))
        model.compile(cache=str(library))  # the file exists: loaded, not compiled
        return lambda features: model.predict(features, n_jobs=1)

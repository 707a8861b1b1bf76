"""A compiled copy of a bundle's LightGBM model (a runtime of :mod:`.runtimes`: lleaves, or
treelite + tl2cgen), verified before use.

The library is a derived cache in the bundle's directory, never the model of record
(``model.txt`` and ``pipeline.json`` stay that): the runtime's library file (``model.so`` for
tl2cgen, ``model.lleaves.so`` for lleaves) plus a ``.json`` sidecar naming the key it was built
for (a hash of the model text, the runtime and its tool versions) and the library's own SHA-256.
A library whose sidecar is missing, names another key or another digest is never loaded: it is
rebuilt. Every loaded library is then checked against LightGBM on a validation batch (the canary
row plus rows drawn from the contract's ranges and levels, with missing values and unseen
categories); any difference beyond ``TOLERANCE`` refuses it.

The build runs in a child process (``python -m streamfit.serving._build``) under a time
bound: gcc on a large model takes minutes (317 s at -O3 for an 877-tree model on a busy 2-core
machine, and once over 20 minutes in the soak run), and a build that outlives its bound is
killed, gcc included, so the compiler moves on to the newer model instead of waiting behind it.
The memory the build takes (treelite's copy of the model, the generated sources: some 70 MB for
that model; LLVM's for lleaves) goes back to the system when the child exits, not into the
predictor's heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import Contract
from ..models.bundle import MODEL_FILE, ModelBundle, atomic_write_text, canary_row
from .runtimes import AUTO, ModelRuntime, Predict, get_runtime, runtimes_for
from .runtimes import compiler as compiler  # re-exported: the slot and tests ask it

log = logging.getLogger("streamfit.predictor")
_native_log = logging.getLogger("streamfit.compiled.native")

TOLERANCE = 1e-9
VALIDATION_ROWS = 400
_TIMING_ROWS = 1000
BUILD_TIMEOUT_S = 600.0  # a build still running then is abandoned: LightGBM keeps serving
_BUILD_MODULE = "streamfit.serving._build"


class CompileError(Exception):
    """No compiled model: the message says why (the predictor keeps LightGBM)."""


@dataclass
class CompiledModel:
    """A loaded, verified compiled predictor for one model."""

    predictor: Predict  # float64 matrix -> probabilities, single-threaded
    runtime: str
    path: Path
    key: str
    compiled: bool  # True if built just now, False if a cached library was reused
    compile_s: float
    max_abs_diff: float
    us_per_row: float
    lightgbm_us_per_row: float
    checked_rows: int = 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.predictor(features)


@dataclass
class CompiledBundle(ModelBundle):
    """The same bundle (same booster, pipeline, manifest), predicting with the compiled model."""

    compiled: CompiledModel | None = None

    def predict_matrix(self, features: np.ndarray) -> np.ndarray:
        assert self.compiled is not None
        return self.compiled.predict(features)


def sidecar_file(runtime: ModelRuntime) -> str:
    return runtime.library_file + ".json"


def cache_key(bundle: ModelBundle, runtime: ModelRuntime | None = None) -> str:
    """What a cached library must have been built from: this model text, this runtime, these
    tool versions."""
    runtime = runtime or get_runtime()
    model = hashlib.sha256(bundle.booster.model_to_string().encode()).hexdigest()
    parts = {
        "model_sha256": model,
        **runtime.versions(),
        "machine": platform.machine(),
        "runtime": runtime.name,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_library(directory: Path, runtime: ModelRuntime, key: str) -> Path | None:
    """The bundle's library if its sidecar vouches for it under ``key``; else None."""
    library, sidecar = directory / runtime.library_file, directory / sidecar_file(runtime)
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("key") != key:
            log.info("compiled model in %s is stale or foreign: rebuilding it", directory)
            return None
        if meta.get("sha256") != _file_sha256(library):
            log.warning("compiled model in %s does not match its digest: rebuilding", directory)
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return library


def _library_directory(directory: Path, libraries: Path | None, key: str) -> Path:
    """Where the library of cache key ``key`` lives: beside the bundle in ``directory``, or in
    its own directory of the shared ``libraries``."""
    return directory if libraries is None else libraries / key


@contextlib.contextmanager
def _building(where: Path) -> Iterator[None]:
    """One build at a time per library directory, across processes: the K predictors of
    ``--processes K`` (or of one machine sharing ``compiled_cache``) start on the same model at
    once, and one builds it while the others wait, then load it (K builds of 15-60 s of CPU
    each on the same cores otherwise). The lock is the kernel's: it goes with a dead holder."""
    with (where / ".build.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    bundle: ModelBundle,
    model_file: Path,
    directory: Path,
    runtime: ModelRuntime,
    key: str,
    threads: int,
    timeout_s: float,
) -> Path:
    """Build ``model_file`` into ``directory``: the library, then its sidecar."""
    library = directory / runtime.library_file
    # The loader caches libraries by path: a fresh build goes to a temporary name first, then
    # replaces the library in one rename, and its sidecar follows (a reader in between sees a
    # sidecar whose digest does not match, and rebuilds rather than trusting it).
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".model-", suffix=library.suffix)
    os.close(handle)
    try:
        _build_in_child(runtime, model_file, Path(temporary), threads, timeout_s)
        digest = _file_sha256(Path(temporary))
        os.replace(temporary, library)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    meta = {
        "key": key,
        "sha256": digest,
        "model_version": bundle.version,
        "runtime": runtime.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "derived cache of model.txt: safe to delete",
    }
    atomic_write_text(directory / sidecar_file(runtime), json.dumps(meta, indent=2))
    return library


def _build_in_child(
    runtime: ModelRuntime, model_file: Path, library: Path, threads: int, timeout_s: float
) -> None:
    """Run the build (:mod:`streamfit.serving._build`) in a child process of its own session,
    killed with every gcc it started if it outlives ``timeout_s``; its output is kept for the
    error message only."""
    command = [sys.executable, "-m", _BUILD_MODULE, runtime.name, str(model_file), str(library)]
    command += [str(threads), str(os.getpid())]  # the build dies with this process
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = child.communicate(timeout=timeout_s)
    except BaseException as exc:  # the bound passed, or the predictor is going away
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise CompileError(f"the build took longer than {timeout_s:g} s: abandoned") from None
        raise
    if child.returncode != 0:
        lines = output.decode("utf-8", errors="replace").strip().splitlines()
        raise CompileError(f"the build failed: {lines[-1] if lines else child.returncode}")


@functools.lru_cache(maxsize=4)
def _validation_columns(contract: Contract) -> dict[str, list[Any]]:
    """The canary, rows drawn from the contract's ranges and levels, and a copy of 100 of them
    with gaps and unseen categories."""
    rng = np.random.default_rng(0)
    canary = canary_row(contract)
    columns: dict[str, list[Any]] = {}
    for spec in contract.columns:
        if spec.kind == "numeric":
            low, high = spec.minimum or 0.0, spec.maximum or 1.0
            values: list[Any] = rng.uniform(low, high, VALIDATION_ROWS).tolist()
        elif spec.kind == "categorical":
            levels = list(spec.levels) or [None]
            values = [levels[i] for i in rng.integers(0, len(levels), VALIDATION_ROWS)]
        else:
            days = rng.integers(0, 3650, VALIDATION_ROWS)
            values = [str(np.datetime64("2015-01-01") + int(d)) for d in days]
        holes = values[:100]
        for i in rng.choice(100, 30, replace=False):
            holes[i] = f"unseen-{spec.name}-{i}" if spec.kind == "categorical" else None
        for i in rng.choice(100, 10, replace=False):
            holes[i] = None
        columns[spec.name] = [canary[spec.name], *values, *holes]
    return columns


def validation_matrix(bundle: ModelBundle) -> np.ndarray:
    return bundle.pipeline.transform(_validation_columns(bundle.contract))


def _us_per_row(predict: Any, features: np.ndarray, rounds: int = 3) -> float:
    predict(features)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        predict(features)
        best = min(best, time.perf_counter() - start)
    return best / len(features) * 1e6


@ctypes.CFUNCTYPE(None, ctypes.c_char_p)
def _native_log_line(message: bytes) -> None:
    _native_log.debug("%s", message.decode("utf-8", errors="replace").rstrip())


@functools.cache
def _route_native_logs() -> None:
    """treelite and tl2cgen print their C++ log lines (version notes, "parallel compilation
    enabled") straight to stdout, where a service's terminal shows its own log only: send them to
    the ``streamfit.compiled.native`` logger at DEBUG instead. Both libraries take one log
    callback each; their private handles are the only way to set it."""
    try:
        import tl2cgen.libloader
        import treelite.core

        tl2cgen.libloader._LIB.TL2cgenRegisterLogCallback(_native_log_line)
        treelite.core._LIB.TreeliteRegisterLogCallback(_native_log_line)
    except (ImportError, AttributeError) as exc:  # a newer release moved them: lines print
        log.debug("treelite/tl2cgen log lines not routed: %s", exc)


def compile_bundle(
    bundle: ModelBundle,
    directory: Path,
    *,
    runtime: str = AUTO,
    threads: int = 1,
    timeout_s: float = BUILD_TIMEOUT_S,
    libraries: Path | None = None,
) -> CompiledModel:
    """Load (or build, then load) the bundle's compiled model and verify it against LightGBM.

    ``libraries``: where built libraries are kept, one directory per cache key (the model text,
    the runtime, its versions and options), so every predictor of a machine that shares it builds
    a model once (K processes of ``--processes``, a restarted predictor with a fresh model cache);
    None keeps them beside the bundle in ``directory``.

    ``runtime`` is a ``model_runtime`` setting: a runtime's name, or ``"auto"`` for the first
    of them (fastest first) that is available, builds and matches LightGBM; one not available
    or refused is logged and the next one tried. Raises CompileError with the reason (every
    runtime's, for ``"auto"``) when there is none to use.
    """
    if not (directory / MODEL_FILE).is_file():
        raise CompileError(f"{directory} is not a bundle directory")
    reasons = []
    for candidate in runtimes_for(runtime):
        reason, level = candidate.missing() or candidate.refuses(bundle.rules.name), logging.INFO
        if reason is None:
            try:
                return _compile_with(candidate, bundle, directory, libraries, threads, timeout_s)
            except CompileError as exc:
                reason, level = str(exc), logging.WARNING
        reasons.append(f"{candidate.name}: {reason}")
        if runtime == AUTO:
            log.log(
                level, "runtime %s not used for v%s: %s", candidate.name, bundle.version, reason
            )
    if runtime != AUTO:
        raise CompileError(f"model runtime {reasons[0]}")
    raise CompileError(f"no model runtime usable ({'; '.join(reasons)})")


def library_cached(
    bundle: ModelBundle, directory: Path, *, runtime: str = AUTO, libraries: Path | None = None
) -> bool:
    """Whether :func:`compile_bundle` would load a library already built rather than build one:
    the first runtime it would try has a library vouched for under this bundle's cache key."""
    for candidate in runtimes_for(runtime):
        if candidate.missing() is None:
            key = cache_key(bundle, candidate)
            where = _library_directory(directory, libraries, key)
            return _cached_library(where, candidate, key) is not None
    return False


def available_runtimes(runtime: str = AUTO) -> tuple[list[ModelRuntime], list[str]]:
    """The runtimes a ``model_runtime`` setting could use here, and why each other one cannot."""
    usable, reasons = [], []
    for candidate in runtimes_for(runtime):
        missing = candidate.missing()
        if missing is None:
            usable.append(candidate)
        else:
            reasons.append(f"{candidate.name}: {missing}")
    return usable, reasons


def _compile_with(
    runtime: ModelRuntime,
    bundle: ModelBundle,
    directory: Path,
    libraries: Path | None,
    threads: int,
    timeout_s: float,
) -> CompiledModel:
    _route_native_logs()
    key = cache_key(bundle, runtime)
    where = _library_directory(directory, libraries, key)
    library = _cached_library(where, runtime, key)
    built, compile_s = library is None, 0.0
    if library is None:
        start = time.perf_counter()
        try:
            where.mkdir(parents=True, exist_ok=True)
            # A directory of libraries may be shared; a bundle's own directory is not.
            with contextlib.nullcontext() if libraries is None else _building(where):
                # Another predictor sharing the directory may have built it while we waited.
                library = _cached_library(where, runtime, key)
                built = library is None
                if library is None:
                    library = _build(
                        bundle, directory / MODEL_FILE, where, runtime, key, threads, timeout_s
                    )
        except CompileError:
            raise
        except Exception as exc:  # a read-only directory, no process to start...
            raise CompileError(f"compile failed: {exc}") from exc
        compile_s = time.perf_counter() - start if built else 0.0
    try:
        predict = runtime.load(library, directory / MODEL_FILE)
    except Exception as exc:
        raise CompileError(f"cannot load {library}: {exc}") from exc
    compiled = CompiledModel(
        predict, runtime.name, library, key, built, compile_s, float("nan"), 0.0, 0.0
    )
    features = validation_matrix(bundle)
    try:
        got = np.asarray(compiled.predict(features), dtype=np.float64)
    except Exception as exc:
        raise CompileError(f"compiled model fails to predict: {exc}") from exc
    expected = bundle.booster.predict(features, num_threads=1)
    if got.shape != expected.shape:
        raise CompileError(f"mismatch: output shape {got.shape}, LightGBM gives {expected.shape}")
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= TOLERANCE:  # also catches NaN
        raise CompileError(f"mismatch: max abs difference {diff:.3g} > {TOLERANCE:g}")
    compiled.max_abs_diff, compiled.checked_rows = diff, len(features)
    timing = np.resize(features, (_TIMING_ROWS, features.shape[1]))
    compiled.us_per_row = _us_per_row(compiled.predict, timing)
    compiled.lightgbm_us_per_row = _us_per_row(
        lambda x: bundle.booster.predict(x, num_threads=1), timing
    )
    return compiled


def compiled_bundle(bundle: ModelBundle, compiled: CompiledModel) -> CompiledBundle:
    return CompiledBundle(bundle.booster, bundle.pipeline, bundle.manifest, compiled)

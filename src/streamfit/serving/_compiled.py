"""A compiled copy of a bundle's LightGBM model (treelite + tl2cgen), verified before use.

The shared library is a derived cache in the bundle's directory, never the model of record
(``model.txt`` and ``pipeline.json`` stay that): ``model.so`` plus ``model.so.json``, a sidecar
naming the key it was built for (a hash of the model text and the treelite/tl2cgen versions)
and the library's own SHA-256. A library whose sidecar is missing, names another key or another
digest is never loaded: it is rebuilt. Every loaded library is then checked against LightGBM on
a validation batch (the canary row plus rows of adult.test through the bundle's pipeline, with
missing values and unseen categories); any difference beyond ``TOLERANCE`` refuses it.

The build runs in a child process (``python -m streamfit.serving._build``) under a time
bound: gcc on a large model takes minutes (317 s at -O3 for an 877-tree model on a busy 2-core
machine, and once over 20 minutes in the soak run), and a build that outlives its bound is
killed, gcc included, so the compiler moves on to the newer model instead of waiting behind it.
The memory the build takes (treelite's copy of the model, the generated sources: some 70 MB for
that model) goes back to the system when the child exits, not into the predictor's heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import CANARY_ROW, MODEL_FILE, ModelBundle, atomic_write_text
from ..data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, load_adult

log = logging.getLogger("streamfit.predictor")
_native_log = logging.getLogger("streamfit.compiled.native")

LIBRARY_FILE = "model.so"
SIDECAR_FILE = "model.so.json"
TOLERANCE = 1e-9
VALIDATION_ROWS = 400
_TIMING_ROWS = 1000
BUILD_TIMEOUT_S = 600.0  # a build still running then is abandoned: LightGBM keeps serving
_BUILD_MODULE = "streamfit.serving._build"


class CompileError(Exception):
    """No compiled model: the message says why (the predictor keeps LightGBM)."""


@dataclass
class CompiledModel:
    """A loaded, verified tl2cgen predictor for one model."""

    predictor: Any  # tl2cgen.Predictor
    path: Path
    key: str
    compiled: bool  # True if built just now, False if a cached library was reused
    compile_s: float
    max_abs_diff: float
    us_per_row: float
    lightgbm_us_per_row: float
    checked_rows: int = 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        import tl2cgen

        matrix = tl2cgen.DMatrix(np.ascontiguousarray(features, dtype=np.float64))
        return self.predictor.predict(matrix).reshape(-1)


@dataclass
class CompiledBundle(ModelBundle):
    """The same bundle (same booster, pipeline, manifest), predicting with the compiled model."""

    compiled: CompiledModel | None = None

    def predict_matrix(self, features: np.ndarray) -> np.ndarray:
        assert self.compiled is not None
        return self.compiled.predict(features)


def compiler() -> str | None:
    """The C compiler tl2cgen would use, or None."""
    return shutil.which(os.environ.get("CC", "gcc"))


def cache_key(bundle: ModelBundle) -> str:
    """What a cached library must have been built from: this model text, these tool versions."""
    import tl2cgen
    import treelite

    model = hashlib.sha256(bundle.booster.model_to_string().encode()).hexdigest()
    parts = {
        "model_sha256": model,
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
        "machine": platform.machine(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_library(directory: Path, key: str) -> Path | None:
    """The bundle's library if its sidecar vouches for it under ``key``; else None."""
    library, sidecar = directory / LIBRARY_FILE, directory / SIDECAR_FILE
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


def _build(bundle: ModelBundle, directory: Path, key: str, threads: int, timeout_s: float) -> Path:
    library = directory / LIBRARY_FILE
    # The loader caches libraries by path: a fresh build goes to a temporary name first, then
    # replaces model.so in one rename, and its sidecar follows (a reader in between sees a
    # sidecar whose digest does not match, and rebuilds rather than trusting it).
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".model-", suffix=".so")
    os.close(handle)
    try:
        _build_in_child(directory / MODEL_FILE, Path(temporary), threads, timeout_s)
        digest = _file_sha256(Path(temporary))
        os.replace(temporary, library)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    meta = {
        "key": key,
        "sha256": digest,
        "model_version": bundle.version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "derived cache of model.txt: safe to delete",
    }
    atomic_write_text(directory / SIDECAR_FILE, json.dumps(meta, indent=2))
    return library


def _build_in_child(model_file: Path, library: Path, threads: int, timeout_s: float) -> None:
    """Run the build (:mod:`streamfit.serving._build`) in a child process of its own session,
    killed with every gcc it started if it outlives ``timeout_s``; its output is kept for the
    error message only."""
    command = [sys.executable, "-m", _BUILD_MODULE, str(model_file), str(library), str(threads)]
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


@functools.lru_cache(maxsize=1)
def _validation_columns() -> dict[str, list[Any]]:
    """The canary, rows of adult.test, and the same rows with gaps and unseen categories."""
    frame = load_adult("test").sample(VALIDATION_ROWS, random_state=0)
    names = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)
    columns: dict[str, list[Any]] = {
        n: [CANARY_ROW.get(n)] + [None if v != v else v for v in frame[n].tolist()] for n in names
    }
    rng = np.random.default_rng(0)
    for name in names:  # a second copy of 100 rows with holes punched in
        values = columns[name][1:101]
        for i in rng.choice(100, 30, replace=False):
            values[i] = None if name in NUMERIC_COLUMNS else f"unseen-{name}-{i}"
        for i in rng.choice(100, 10, replace=False):
            values[i] = None
        columns[name] = columns[name] + values
    return columns


def validation_matrix(bundle: ModelBundle) -> np.ndarray:
    return bundle.pipeline.transform(_validation_columns())


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
    threads: int = 1,
    timeout_s: float = BUILD_TIMEOUT_S,
) -> CompiledModel:
    """Load (or build, then load) the bundle's compiled model and verify it against LightGBM.

    Raises CompileError with the reason when there is none to use.
    """
    if compiler() is None:
        raise CompileError(f"no C compiler found ({os.environ.get('CC', 'gcc')} not on PATH)")
    try:
        import tl2cgen
        import treelite  # noqa: F401
    except ImportError as exc:
        raise CompileError(f"treelite/tl2cgen not installed: {exc}") from exc
    _route_native_logs()
    if not (directory / MODEL_FILE).is_file():
        raise CompileError(f"{directory} is not a bundle directory")
    key = cache_key(bundle)
    library = _cached_library(directory, key)
    built, compile_s = library is None, 0.0
    if library is None:
        start = time.perf_counter()
        try:
            library = _build(bundle, directory, key, threads, timeout_s)
        except CompileError:
            raise
        except Exception as exc:  # a read-only directory, no process to start...
            raise CompileError(f"compile failed: {exc}") from exc
        compile_s = time.perf_counter() - start
    try:
        predictor = tl2cgen.Predictor(str(library), nthread=1)
    except Exception as exc:
        raise CompileError(f"cannot load {library}: {exc}") from exc
    compiled = CompiledModel(predictor, library, key, built, compile_s, float("nan"), 0.0, 0.0)
    features = validation_matrix(bundle)
    try:
        got = compiled.predict(features)
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

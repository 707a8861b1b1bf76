"""The predictor's model slot: holds the model serving; fetches, verifies, validates, swaps and
compiles the next one, all off the hot path.

A new model arrives as a registry entry (version, model URI, SHA-256: a ``models`` event, or
``@champion`` at start-up). The slot downloads its bundle through the tracking server into the
predictor's own cache (``<data_dir>/model-cache``), checks the files against the digest recorded
when it was registered, loads and validates it (the canary warms it too), and swaps it in by one
reference assignment: the loop reads :attr:`ModelSlot.bundle` once per batch. A failure at any
step is logged with its reason and counted; the model serving keeps serving.

Each model that starts serving is then compiled by the ``model_runtime`` setting's runtime
(lleaves, or treelite + tl2cgen), or its cached library in the same cache directory loaded, and
checked against LightGBM by a compiler thread at a lower priority; if it matches and is still
the model serving, the compiled copy is swapped in the same way. LightGBM serves until then, and
for good when no runtime is available or the compiled copy is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..models.bundle import BundleError, ModelBundle
from ..models.registry import IntegrityError, ModelRegistry, RegisteredBundle
from ..ops.heap import release_freed_memory
from ._compiled import (
    CompileError,
    available_runtimes,
    compile_bundle,
    compiled_bundle,
    library_cached,
)
from .runtimes import AUTO

if TYPE_CHECKING:
    from ..ops.metrics import PredictorMetrics

log = logging.getLogger("streamfit.predictor")


class ModelSlot:
    """The model a predictor serves, and how the next one gets there."""

    def __init__(
        self,
        registry: ModelRegistry,
        cache: Path,
        metrics: PredictorMetrics,
        *,
        compile_model: bool = True,
        runtime: str = AUTO,
        libraries: Path | None = None,
        role: str = "serving",
    ) -> None:
        self.role = role  # what the logs say this slot does: "serving" or "shadowing"
        self.registry = registry
        self.cache = Path(cache)
        self.metrics = metrics
        self.compile_model = compile_model
        self.runtime = runtime  # a model_runtime setting: "auto" or a runtime's name
        self.libraries = libraries  # built libraries by cache key (None: beside each bundle)
        self.bundle: ModelBundle | None = None  # read once per batch by the loop
        self._directories: dict[int, Path] = {}  # version -> its verified cache directory
        # The lock orders swaps by the watcher and the compiler thread.
        self._swap_lock = threading.Lock()
        self._compile_wanted: ModelBundle | None = None
        self._compile_wake = threading.Event()
        self._compile_idle = threading.Event()
        self._compile_idle.set()
        self._compiler_thread: threading.Thread | None = None
        self._no_runtime_said = False
        self.last_refusal: str | None = None  # why the latest model was refused

    @property
    def version(self) -> int | None:
        bundle = self.bundle
        return bundle.version if bundle else None

    @property
    def serving_compiled(self) -> bool:
        return getattr(self.bundle, "compiled", None) is not None

    def wait_for_compile(self, timeout: float | None = None) -> bool:
        """Wait until the compiler thread has dealt with the latest model; False on timeout."""
        return self._compile_idle.wait(timeout)

    def compiled_library_cached(self) -> bool:
        """Whether the model serving will be compiled from a library already built (a restart,
        or another predictor of the machine built it): loading one takes about a second."""
        bundle = self.bundle
        if not self.compile_model or bundle is None or self.serving_compiled:
            return False
        directory = self._directories[bundle.version]
        return library_cached(bundle, directory, runtime=self.runtime, libraries=self.libraries)

    # -- fetch, verify, validate, swap ---------------------------------------------------------
    def entry(
        self, version: int, sha256: str | None = None, model_uri: str | None = None
    ) -> RegisteredBundle:
        """The registry's entry for ``version``: its digest is the one recorded at registration.

        An event's ``sha256`` is only a hint: anyone who can write to ``models`` could send one
        matching files they altered, so the registry's tag is always asked for and always wins
        (a disagreement is logged). Raises BundleError when the registry does not know it.
        """
        registered = self.registry.get(version)
        if sha256 and sha256 != registered.sha256:
            log.warning(
                "model event for v%s carries sha256 %s…, the registry recorded %s…: "
                "checking against the registry's",
                version,
                sha256[:12],
                (registered.sha256 or "nothing")[:12],
            )
        if model_uri and model_uri != registered.model_uri:
            log.warning(
                "model event for v%s names %s, the registry %s: fetching the registry's",
                version,
                model_uri,
                registered.model_uri,
            )
        return registered

    def swap_to(self, entry: RegisteredBundle) -> bool:
        """Fetch, verify, load, validate and warm ``entry``'s bundle, then swap it in.
        False (logged, counted, the old model still serving) if any step refuses it."""
        try:
            bundle, directory = self.registry.load(entry, self.cache)
            bundle.validate()  # also warms the model: the first real batch pays nothing extra
        except IntegrityError as exc:
            self.last_refusal = f"v{entry.version} refused (hash mismatch): {exc}"
            self.metrics.models_refused.labels("integrity").inc()
            log.error(
                "refused model v%s (hash mismatch), still serving v%s: %s",
                entry.version,
                self.version,
                exc,
            )
            return False
        except BundleError as exc:
            self.last_refusal = f"v{entry.version} refused: {exc}"
            self.metrics.models_refused.labels("invalid").inc()
            log.error("refused model v%s, still serving v%s: %s", entry.version, self.version, exc)
            return False
        self._directories[entry.version] = directory
        with self._swap_lock:
            previous, self.bundle = self.version, bundle  # atomic reference swap
        self._serving(bundle.version, compiled=False)
        self.metrics.swaps.inc()
        if previous is None:
            log.info("now %s model v%s", self.role, bundle.version)
        else:
            log.info("now %s model v%s (was v%s)", self.role, bundle.version, previous)
        if self.compile_model:
            self._request_compile(bundle)
        # The old model is gone (or goes with the batch in flight: the compiler thread's next
        # trim returns that); glibc would keep its memory (see streamfit/heap.py).
        release_freed_memory()
        return True

    def clear(self) -> int | None:
        """Serve nothing any more (a shadow slot whose challenger's test ended); the version
        it held, if any. A compile under way finds the slot empty and is not swapped in."""
        with self._swap_lock:
            previous, self.bundle = self.version, None
        release_freed_memory()
        return previous

    def swap_to_champion(self) -> bool:
        """Serve the registry's ``@champion``; False when there is none (or it is refused)."""
        entry = self.registry.champion()
        return entry is not None and self.swap_to(entry)

    def _serving(self, version: int, *, compiled: bool) -> None:
        self.metrics.model_version.set(version)
        self.metrics.model_compiled.set(int(compiled))
        self.metrics.model_loaded.set(time.time())

    # -- compiled models (off the hot path) ---------------------------------------------------
    def _request_compile(self, bundle: ModelBundle) -> None:
        usable, reasons = available_runtimes(self.runtime)
        if not usable:
            if not self._no_runtime_said:
                self._no_runtime_said = True
                log.warning(
                    "no model runtime available (%s): serving with LightGBM, not a compiled model",
                    "; ".join(reasons),
                )
            return
        with self._swap_lock:
            self._compile_wanted = bundle  # a newer model supersedes one not started yet
            self._compile_idle.clear()
            if self._compiler_thread is None:
                self._compiler_thread = threading.Thread(
                    target=self._compile_models, name="model-compiler", daemon=True
                )
                self._compiler_thread.start()
        self._compile_wake.set()

    def _compile_models(self) -> None:
        """Compiler thread: one model at a time, the newest asked for, at a lower priority."""
        with contextlib.suppress(OSError, AttributeError):  # this thread and the gcc it runs
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            self._compile_wake.wait()
            with self._swap_lock:
                self._compile_wake.clear()
                bundle, self._compile_wanted = self._compile_wanted, None
            if bundle is not None and bundle is self.bundle:
                self.compile(bundle)
            bundle = None  # held until the next wake-up otherwise: a model no longer served
            release_freed_memory()  # the build's loading and checking, a superseded model
            with self._swap_lock:
                if self._compile_wanted is None:
                    self._compile_idle.set()

    def compile(self, bundle: ModelBundle) -> None:
        """Compile ``bundle`` (in its cache directory) and swap the compiled copy in, unless
        another model has started serving meanwhile."""
        version = bundle.version
        try:
            compiled = compile_bundle(
                bundle, self._directories[version], runtime=self.runtime, libraries=self.libraries
            )
        except CompileError as exc:
            self.metrics.compile_refusals.inc()
            log.warning("model v%s stays on LightGBM: %s", version, exc)
            return
        except Exception:  # never let the compiler thread die: LightGBM keeps serving
            self.metrics.compile_refusals.inc()
            log.exception("model v%s stays on LightGBM: compiling it raised", version)
            return
        with self._swap_lock:
            if self.bundle is not bundle:
                log.info("compiled model v%s not swapped in: no longer the model serving", version)
                return
            self.bundle = compiled_bundle(bundle, compiled)  # atomic reference swap
            self.metrics.model_compiled.set(1)
        self.metrics.compiled_models.inc()
        log.info(
            "%s model v%s compiled by %s (%.1f µs/row vs %.1f µs/row with LightGBM; %s; "
            "max abs difference %.3g on %s checked rows)",
            self.role,
            version,
            compiled.runtime,
            compiled.us_per_row,
            compiled.lightgbm_us_per_row,
            f"built in {compiled.compile_s:.1f} s" if compiled.compiled else "cached library",
            compiled.max_abs_diff,
            compiled.checked_rows,
        )


__all__ = ["ModelSlot"]

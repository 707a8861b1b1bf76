"""The compiled model in the predictor: swapped in off the hot path, LightGBM meanwhile and when
there is none. What every runtime must do on its own is the contract in test_runtimes.py."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

import orjson
import pytest

from streamfit import messages
from streamfit.bus import MemoryBus
from streamfit.models.bundle import ModelBundle, ModelStore
from streamfit.serving import Predictor, _compiled
from streamfit.serving._compiled import CompileError, compile_bundle
from streamfit.serving.runtimes import runtimes_for
from tests.conftest import skip_or_fail_in_ci
from tests.harness import wait_until
from tests.serving.conftest import Running, train_bundle


@pytest.fixture(autouse=True)
def _compiler() -> None:
    """Every test here compiles: the default serving path needs a C compiler."""
    if _compiled.compiler() is None:
        skip_or_fail_in_ci("no C compiler")


@pytest.fixture
def local(tmp_path):
    """A bundle store on disk, for the compiler alone (no predictor, no registry)."""
    store = ModelStore(tmp_path / "local", keep=5)
    store.set_champion(store.save(train_bundle(rounds=10)))
    return store


def _wait_compiled(predictor, timeout: float = 120.0) -> None:
    assert predictor.wait_for_compile(timeout), "the compiler thread did not finish in time"


def _predictions(batch):
    return [orjson.loads(m.value) for m in batch if m.topic == "predictions"]


def test_a_build_past_its_time_bound_is_abandoned_with_its_compilers(local):
    """The build runs in a child process; past its bound the child and every gcc it started
    (tl2cgen's build runs gcc) are killed, nothing half-built is left, and a later build with
    time enough succeeds."""
    store = local
    version = store.champion()
    bundle, directory = store.load(version), store.path(version)
    sessions: set[int] = set()  # the build child's session: it and every gcc it started
    building = threading.Event()
    building.set()

    def watch() -> None:
        while building.is_set():
            sessions.update(_sessions_of_processes_naming(directory))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(CompileError, match="took longer than 1 s: abandoned"):
            compile_bundle(bundle, directory, runtime="tl2cgen", timeout_s=1.0)
    finally:
        building.clear()
        watcher.join()
    assert sessions  # the watcher saw the build child
    wait_until(  # no gcc left compiling
        lambda: _processes_in_sessions(sessions) == [], 10.0, "no gcc left", every=0.05
    )
    assert sorted(p.name for p in directory.iterdir() if "model." in p.name) == ["model.txt"]
    built = compile_bundle(bundle, directory, runtime="tl2cgen")
    assert built.compiled and built.max_abs_diff <= _compiled.TOLERANCE


def _processes() -> list[tuple[int, int, bytes]]:
    """(pid, session id, command line) of every live process (zombies are gone already)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] != "Z":
                    found.append((int(proc.name), int(stat[3]), (proc / "cmdline").read_bytes()))
    return found


def _sessions_of_processes_naming(directory: Path) -> set[int]:
    """Sessions of the processes whose command line names ``directory`` (the build child runs
    in a session of its own: other engineers' compilers on this machine are not in it)."""
    return {sid for _, sid, command in _processes() if str(directory).encode() in command}


def _processes_in_sessions(sessions: set[int]) -> list[int]:
    return [pid for pid, sid, _ in _processes() if sid in sessions]


def test_no_compiler_means_lightgbm_said_once(settings, store, local, monkeypatch, caplog):
    """tl2cgen without gcc: no runtime available, LightGBM serves and the log says why once."""

    monkeypatch.setenv("CC", "no-such-compiler-streamfit")
    with pytest.raises(CompileError, match="no C compiler"):
        compile_bundle(local.load(1), local.path(1), runtime="tl2cgen")
    predictor = Predictor(settings.replace(model_runtime="tl2cgen"), MemoryBus())
    newer = store.save(train_bundle(rounds=8, seed=6))
    assert predictor.swap_to(1) and predictor.swap_to(newer)
    assert predictor.wait_for_compile(0) and not predictor.serving_compiled
    assert caplog.text.count("no model runtime available (tl2cgen: no C compiler found") == 1


def test_predictor_serves_the_compiled_model_with_its_version(
    settings, store, requests_data, caplog
):
    caplog.set_level(logging.INFO, logger="streamfit.predictor")
    service = Running(settings)
    try:
        predictor = service.predictor
        _wait_compiled(predictor)
        assert predictor.serving_compiled and predictor.model_version == 1
        served = runtimes_for(settings.model_runtime)[0].name  # the first, when it can run
        assert f"serving model v1 compiled by {served}" in caplog.text
        for i, row in enumerate(requests_data[:15]):
            service.send("requests", messages.request(f"r{i}", row))
        answers = {a["request_id"]: a for a in _predictions(service.collect(15))}
        expected = store.load(1).predict_records(requests_data[:15])
        for i, probability in enumerate(expected):
            assert answers[f"r{i}"]["model_version"] == 1
            assert answers[f"r{i}"]["probability"] == pytest.approx(probability, abs=1e-9)
        # a new model: LightGBM serves it at once, its compiled copy follows
        new_version = store.save(train_bundle(rounds=20, seed=2))
        service.send("models", messages.model_ready(new_version, "promoted"))
        wait_until(
            lambda: predictor.model_version == new_version and predictor.serving_compiled,
            120.0,
            "the new model served compiled",
            every=0.05,
        )
        service.send("requests", messages.request("after", requests_data[0]))
        answer = _predictions(service.collect(1))[0]
        assert answer["model_version"] == new_version
        assert answer["probability"] == pytest.approx(
            store.load(new_version).predict_records([requests_data[0]])[0], abs=1e-9
        )
        assert predictor.stats.compiled_models == 2 and predictor.stats.compile_refusals == 0
    finally:
        service.stop()


def test_predictors_sharing_a_compiled_cache_build_each_model_once(settings, store, tmp_path):
    """Two predictors, caches of their own, one compiled cache (``compiled_cache``): the second
    loads the library the first built, found by the model's content, not its path."""
    shared = settings.replace(compiled_cache=str(tmp_path / "compiled"))
    first = Predictor(shared.replace(data_dir=tmp_path / "first"), MemoryBus())
    second = Predictor(shared.replace(data_dir=tmp_path / "second"), MemoryBus())
    for predictor in (first, second):
        assert predictor.swap_to(1)
        _wait_compiled(predictor)
        assert predictor.serving_compiled
    built, reused = (p._bundle.compiled for p in (first, second))
    assert built.compiled and not reused.compiled
    assert built.path == reused.path and built.path.parent == shared.compiled_models / built.key
    for data_dir in (tmp_path / "first", tmp_path / "second"):  # nothing beside the bundles
        assert {p.name for p in (data_dir / "model-cache" / "v000001").iterdir()} == {
            "contract.json", "manifest.json", "model.txt", "pipeline.json"
        }  # fmt: skip


def test_predictors_compiling_the_same_model_at_once_build_it_once(local, tmp_path):
    """K predictors started together (``--processes K``) sharing a compiled cache: one builds
    the model, the others wait for it and load its library."""
    version = local.champion()
    results: list = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                compile_bundle(local.load(version), local.path(version), libraries=tmp_path)
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(results) == 3
    assert sorted(r.compiled for r in results) == [False, False, True]
    assert len({r.path for r in results}) == 1


def test_compile_disabled_serves_lightgbm(settings, store, requests_data):
    service = Running(settings.replace(compile_model=False))
    try:
        service.send("requests", messages.request("r", requests_data[0]))
        assert _predictions(service.collect(1))[0]["model_version"] == 1
        assert service.predictor.wait_for_compile(0)  # nothing was ever asked for
        assert not service.predictor.serving_compiled
        assert type(service.predictor._bundle) is ModelBundle
        for runtime in runtimes_for(settings.model_runtime):  # nothing built, anywhere
            for cache in (settings.model_cache, settings.compiled_models):
                assert not list(cache.glob(f"**/{runtime.library_file}"))
    finally:
        service.stop()


def test_compiled_copy_of_a_superseded_model_is_not_swapped_in(settings, store):

    predictor = Predictor(settings.replace(compile_model=False), MemoryBus())
    assert predictor.swap_to(1)
    old = predictor._bundle
    newer = store.save(train_bundle(rounds=8, seed=5))
    assert predictor.swap_to(newer)
    predictor.slot.compile(old)  # finished after the swap: must not replace the newer model
    assert predictor.model_version == newer and not predictor.serving_compiled
    predictor.slot.compile(predictor._bundle)
    assert predictor.model_version == newer and predictor.serving_compiled


def test_refused_compile_keeps_lightgbm(settings, store, monkeypatch, caplog):
    from streamfit.serving import _slot as slot_module

    def refuse(bundle, directory, **options):
        raise CompileError("mismatch: max abs difference 0.5 > 1e-09")

    monkeypatch.setattr(slot_module, "compile_bundle", refuse)
    caplog.set_level(logging.INFO, logger="streamfit.predictor")
    predictor = Predictor(settings, MemoryBus())
    assert predictor.swap_to(1)
    _wait_compiled(predictor)
    assert not predictor.serving_compiled and predictor.stats.compile_refusals == 1
    assert "model v1 stays on LightGBM: mismatch" in caplog.text


def test_a_library_already_built_serves_from_the_first_request(settings, store, tmp_path):
    """A predictor (re)started where the champion's library is already built loads it before it
    consumes: no request of the start-up is answered by LightGBM. One with nothing built does
    not wait for a build: LightGBM answers meanwhile."""
    shared = settings.replace(compiled_cache=str(tmp_path / "compiled"))
    first = Running(shared.replace(data_dir=tmp_path / "first"))
    try:
        assert not first.predictor.serving_compiled  # ready before its build: LightGBM serves
        _wait_compiled(first.predictor)
        assert first.predictor.serving_compiled
    finally:
        first.stop()
    restarted = Running(shared.replace(data_dir=tmp_path / "restarted"))
    try:
        assert restarted.predictor.serving_compiled  # as soon as it is ready
        assert not restarted.predictor._bundle.compiled.compiled  # loaded, not built again
    finally:
        restarted.stop()

"""Model integrity on every path a model reaches a predictor (real MLflow tracking server): the
start-up champion, a ``models`` event with the right digest, one without a digest, one whose
digest disagrees with the registry (the registry's recorded one wins), and a bundle directory
carrying a pickle and code beside its files (never downloaded, never run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from streamfit import messages
from streamfit.models.bundle import BUNDLE_FILES, MODEL_FILE, bundle_sha256
from streamfit.serving import Predictor
from streamfit.serving._compiled import sidecar_file
from streamfit.serving.runtimes import runtimes_for
from tests.harness import wait_until
from tests.serving.conftest import Running, train_bundle


def _answer(running: Running, request_id: str, row: dict) -> dict:
    running.send("requests", messages.request(request_id, row))
    (answer,) = [orjson.loads(m.value) for m in running.collect(1) if m.topic == "predictions"]
    return answer


def _tamper(store, version: int) -> str:
    """Change a registered bundle's model where the tracking server keeps it (still a valid
    LightGBM model: only the digest can tell); return the digest of the altered files."""
    target = store.artifact_file(version)
    target.write_bytes(target.read_bytes().replace(b"Tree=0", b"Tree=0 ", 1))
    return bundle_sha256(target.parent)


def test_an_event_digest_matching_altered_files_is_refused_the_registrys_wins(
    running, requests_data, store
):
    """Whoever can write to ``models`` cannot vouch for files they altered: the predictor checks
    against the digest recorded at registration, not the one in the event."""
    bad = store.save(train_bundle(rounds=5))
    forged = _tamper(store, bad)
    assert forged != store.registry.get(bad).sha256
    running.send(
        "models",
        messages.model_ready(
            bad, "promoted", model_uri=f"models:/{store.registry.name}/{bad}", sha256=forged
        ),
    )
    wait_until(
        lambda: running.predictor.stats.refused_models == 1, 30, "the model refused", every=0.02
    )
    assert running.predictor.stats.integrity_refusals == 1
    assert _answer(running, "still-v1", requests_data[0])["model_version"] == 1


def test_an_event_digest_disagreeing_with_the_registry_does_not_refuse_a_good_bundle(
    running, requests_data, store
):
    good = store.save(train_bundle(rounds=7, seed=2))
    running.send("models", messages.model_ready(good, "promoted", sha256="0" * 64))
    wait_until(
        lambda: running.predictor.model_version == good, 30, "the good model served", every=0.02
    )
    assert running.predictor.stats.integrity_refusals == 0
    assert _answer(running, "on-good", requests_data[0])["model_version"] == good


def test_an_event_without_a_digest_is_checked_against_the_registry_tag(
    running, requests_data, store
):
    bad = store.save(train_bundle(rounds=5))
    _tamper(store, bad)
    running.send("models", orjson.dumps({"version": bad, "event": "promoted"}))
    wait_until(
        lambda: running.predictor.stats.refused_models == 1, 30, "the model refused", every=0.02
    )
    assert running.predictor.stats.integrity_refusals == 1
    good = store.save(train_bundle(rounds=6, seed=3))
    running.send("models", orjson.dumps({"version": good, "event": "promoted"}))
    wait_until(
        lambda: running.predictor.model_version == good, 30, "the good model served", every=0.02
    )
    assert _answer(running, "on-good", requests_data[0])["model_version"] == good


def test_a_tampered_startup_champion_is_never_served(settings, store):
    champion = store.champion()
    _tamper(store, champion)
    predictor = Predictor(settings, _bus())
    assert predictor.slot.swap_to_champion() is False
    assert predictor.stats.integrity_refusals == 1 and predictor.model_version is None


def _bus():
    from streamfit.bus import MemoryBus

    return MemoryBus()


# Protocol-0 pickle bytes written by hand (no pickle module): unpickling them would run
# `touch <marker>`. Nothing in a predictor may ever unpickle or import what a bundle carries.
def _evil_pickle(marker: Path) -> bytes:
    return b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


def test_a_pickle_and_code_beside_the_bundle_are_never_fetched_loaded_or_run(
    settings, store, tmp_path
):
    version = store.save(train_bundle(rounds=5))
    bundle_dir = store.artifact_file(version).parent
    model_dir = bundle_dir.parent.parent  # the pyfunc model: MLmodel, python_model.pkl...
    marker = tmp_path / "code-ran"
    hook = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    for directory in (bundle_dir, model_dir):
        (directory / "python_model.pkl").write_bytes(_evil_pickle(marker))
        (directory / "model.pkl").write_bytes(_evil_pickle(marker))
        (directory / "loader.py").write_bytes(hook)
        (directory / "__init__.py").write_bytes(hook)
    predictor = Predictor(settings, _bus())
    entry = predictor.slot.registry.get(version)
    assert predictor.slot.swap_to(entry)
    predictor.slot.wait_for_compile(timeout=300)  # a build in flight has a temporary file
    cached = settings.model_cache / f"v{version:06d}"
    runtimes = runtimes_for(settings.model_runtime)
    built_here = {r.library_file for r in runtimes} | {sidecar_file(r) for r in runtimes}
    assert sorted(p.name for p in cached.iterdir() if p.name not in built_here) == sorted(
        BUNDLE_FILES
    )
    assert not marker.exists()
    # the whole cache holds nothing but bundle files (and compiled libraries it built itself)
    strays = [
        p
        for p in settings.model_cache.rglob("*")
        if p.is_file() and p.suffix in {".pkl", ".py", ".pyc"}
    ]
    assert strays == []
    shutil.rmtree(settings.model_cache)
    assert (bundle_dir / MODEL_FILE).exists()

"""The contract every model runtime keeps (lleaves, treelite + tl2cgen): the same outputs as
LightGBM (missing values and unseen categories included), a cache beside the bundle that is
never trusted blindly, a library that cannot be loaded refused without taking the process down,
a build bounded in time, and a runtime that is not installed giving way with a clear log line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from streamfit.config import MODEL_RUNTIMES, ConfigError, Settings
from streamfit.contract import infer, task_of
from streamfit.datasets.adult import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, load_adult
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import ModelBundle, ModelStore
from streamfit.serving import _compiled
from streamfit.serving._compiled import CompileError, compile_bundle, compiled_bundle, sidecar_file
from streamfit.serving.runtimes import AUTO, get_runtime, runtimes_for
from tests.conftest import skip_or_fail_in_ci
from tests.data_sets import penguins
from tests.serving.conftest import train_bundle

RUNTIMES = MODEL_RUNTIMES[1:]  # every runtime, "auto" aside


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    found = get_runtime(request.param)
    if found.missing():
        skip_or_fail_in_ci(f"{found.name} cannot run here: {found.missing()}")
    return found


@pytest.fixture
def local(tmp_path):
    """A bundle store on disk, for the compiler alone (no predictor, no registry)."""
    store = ModelStore(tmp_path / "local", keep=5)
    store.set_champion(store.save(train_bundle(rounds=10)))
    return store


def _holes(frame, share: float = 0.3, seed: int = 0) -> dict[str, list]:
    """adult.test columns with missing values and categories the pipeline never saw."""
    rng = np.random.default_rng(seed)
    columns = {}
    for name in (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS):
        values = [None if v != v else v for v in frame[name].tolist()]
        for i in np.flatnonzero(rng.random(len(values)) < share):
            if name in CATEGORICAL_COLUMNS and i % 2:
                values[i] = f"never-seen-{i}"
            else:
                values[i] = None
        columns[name] = values
    return columns


def test_runtime_equals_lightgbm_with_missing_values_and_unseen_categories(runtime, local):
    version = local.champion()
    bundle = local.load(version)
    compiled = compile_bundle(bundle, local.path(version), runtime=runtime.name)
    assert compiled.runtime == runtime.name and compiled.compiled
    assert compiled.max_abs_diff <= _compiled.TOLERANCE
    assert compiled.checked_rows > 400  # canary, adult.test rows, and rows with holes
    served = compiled_bundle(bundle, compiled)
    frame = load_adult("test").head(2000)
    for features in (bundle.pipeline.transform(frame), bundle.pipeline.transform(_holes(frame))):
        assert np.isnan(features).any()
        for rows in (1, 10, 1000):  # the batch sizes the predictor sees
            np.testing.assert_allclose(
                served.predict_matrix(features[:rows]),
                bundle.booster.predict(features[:rows], num_threads=1),
                rtol=0,
                atol=1e-9,
            )
    # the library is cached in the bundle, beside a sidecar naming what it was built from
    directory = local.path(version)
    meta = json.loads((directory / sidecar_file(runtime)).read_text())
    assert meta["key"] == _compiled.cache_key(bundle, runtime) and meta["runtime"] == runtime.name
    again = compile_bundle(local.load(version), directory, runtime=runtime.name)
    assert not again.compiled and again.max_abs_diff <= _compiled.TOLERANCE


def _penguin_bundle() -> ModelBundle:
    """A small multiclass model: palmerpenguins' species, three classes."""
    frame = pd.read_csv(penguins())
    contract = infer(frame, "species").contract
    pipeline = FeaturePipeline(contract).fit(frame)
    rules = task_of(contract)
    data = lgb.Dataset(
        pipeline.transform(frame),
        rules.encode_labels(frame["species"].tolist()),
        categorical_feature=pipeline.categorical_features,
    )
    params = {**rules.lightgbm_params(), "verbose": -1, "num_threads": 1, "seed": 0}
    return ModelBundle(lgb.train(params, data, num_boost_round=20), pipeline, {"data_rows": 344})


def test_a_multiclass_model_is_compiled_by_the_runtimes_that_take_it(runtime, tmp_path):
    """tl2cgen serves a multiclass model, a row of class probabilities each, as LightGBM;
    lleaves, which aborts on one, declines it with the reason."""
    store = ModelStore(tmp_path / "local", keep=5)
    version = store.save(_penguin_bundle())
    bundle, directory = store.load(version), store.path(version)
    if runtime.refuses("multiclass"):
        with pytest.raises(CompileError, match="multiclass"):
            compile_bundle(bundle, directory, runtime=runtime.name)
        return
    compiled = compile_bundle(bundle, directory, runtime=runtime.name)
    assert compiled.max_abs_diff <= _compiled.TOLERANCE
    features = bundle.pipeline.transform(pd.read_csv(penguins()))
    got = compiled_bundle(bundle, compiled).predict_matrix(features)
    assert got.shape == (len(features), 3)
    np.testing.assert_allclose(got, bundle.booster.predict(features), rtol=0, atol=1e-9)


def test_lleaves_inlines_small_trees_and_builds_large_ones_each_a_function_of_its_own(tmp_path):
    """Trees of more leaves than lleaves inlines (flights' kind, whose inlined build does not
    finish within the build's bound) are built each a function of its own, and predict as
    LightGBM; trees of LightGBM's default size are inlined, as lleaves does by default."""
    from streamfit.serving.runtimes._lleaves import _INLINED_TREE_LEAVES, inlines

    runtime = get_runtime("lleaves")
    if runtime.missing():
        skip_or_fail_in_ci(f"lleaves cannot run here: {runtime.missing()}")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4000, 8))
    data = lgb.Dataset(features, features @ rng.normal(size=8) + rng.normal(size=4000))
    files, large_leaves = {}, 2 * _INLINED_TREE_LEAVES
    for leaves in (_INLINED_TREE_LEAVES, large_leaves):
        params = {"num_leaves": leaves, "min_data_in_leaf": 2, "verbose": -1, "num_threads": 1}
        large = lgb.train(params, data, num_boost_round=60)
        large.save_model(files.setdefault(leaves, tmp_path / f"model-{leaves}.txt"))
    assert all(tree["num_leaves"] == large_leaves for tree in large.dump_model()["tree_info"])
    assert inlines(files[_INLINED_TREE_LEAVES]) and not inlines(files[large_leaves])
    model_file, library = files[large_leaves], tmp_path / "model.lleaves.so"
    runtime.build(model_file, library, threads=1)
    predict = runtime.load(library, model_file)
    np.testing.assert_allclose(predict(features), large.predict(features), rtol=0, atol=1e-9)


def test_corrupted_library_is_rebuilt(runtime, local):
    version = local.champion()
    bundle, directory = local.load(version), local.path(version)
    compile_bundle(bundle, directory, runtime=runtime.name)
    (directory / runtime.library_file).write_bytes(b"\x7fELF not really a library" * 100)
    rebuilt = compile_bundle(bundle, directory, runtime=runtime.name)
    assert rebuilt.compiled and rebuilt.max_abs_diff <= _compiled.TOLERANCE


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_corrupted_library_with_a_forged_sidecar_is_refused_not_loaded(runtime, local, damage):
    """Its sidecar vouches for it (digest rewritten to match): refused with the reason, and the
    process that tried is still here (`dlopen` of a truncated library dies of SIGBUS)."""
    version = local.champion()
    bundle, directory = local.load(version), local.path(version)
    compile_bundle(bundle, directory, runtime=runtime.name)
    library = directory / runtime.library_file
    good = library.read_bytes()
    if damage == "truncated":
        library.write_bytes(good[:4096])
    else:  # the header kept, the rest garbage
        library.write_bytes(good[:64] + bytes(range(256)) * ((len(good) - 64) // 256))
    sidecar = directory / sidecar_file(runtime)
    meta = json.loads(sidecar.read_text())
    meta["sha256"] = _compiled._file_sha256(library)
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CompileError, match="cannot load"):
        compile_bundle(bundle, directory, runtime=runtime.name)


def test_another_models_library_is_rebuilt_and_a_forged_one_refused(runtime, local):
    first = local.champion()
    compile_bundle(local.load(first), local.path(first), runtime=runtime.name)
    files = (runtime.library_file, sidecar_file(runtime))
    # another model's library and sidecar, copied in: the key names the other model
    other = local.save(train_bundle(rounds=12, seed=3))
    for name in files:
        (local.path(other) / name).write_bytes((local.path(first) / name).read_bytes())
    rebuilt = compile_bundle(local.load(other), local.path(other), runtime=runtime.name)
    assert rebuilt.compiled and rebuilt.max_abs_diff <= _compiled.TOLERANCE
    # the same, with the sidecar rewritten to claim the third model: loaded, then refused
    forged = local.save(train_bundle(rounds=14, seed=4))
    bundle = local.load(forged)
    (local.path(forged) / files[0]).write_bytes((local.path(first) / files[0]).read_bytes())
    meta = json.loads((local.path(first) / files[1]).read_text())
    meta["key"] = _compiled.cache_key(bundle, runtime)
    (local.path(forged) / files[1]).write_text(json.dumps(meta))
    with pytest.raises(CompileError, match="mismatch"):
        compile_bundle(bundle, local.path(forged), runtime=runtime.name)


def test_a_build_past_its_time_bound_is_abandoned(runtime, local):
    version = local.champion()
    bundle, directory = local.load(version), local.path(version)
    with pytest.raises(CompileError, match="took longer than 0.2 s: abandoned"):
        compile_bundle(bundle, directory, runtime=runtime.name, timeout_s=0.2)
    assert sorted(p.name for p in directory.iterdir() if "model." in p.name) == ["model.txt"]
    built = compile_bundle(bundle, directory, runtime=runtime.name)
    assert built.compiled and built.max_abs_diff <= _compiled.TOLERANCE


def test_a_runtime_not_installed_gives_way_with_a_clear_log_line(
    runtime, local, monkeypatch, caplog
):
    """Each runtime's Python package shares its name: hiding it is what not installing does."""
    monkeypatch.setitem(sys.modules, runtime.name, None)
    assert "not installed" in (runtime.missing() or "")
    version = local.champion()
    with pytest.raises(CompileError, match=f"model runtime {runtime.name}: .*not installed"):
        compile_bundle(local.load(version), local.path(version), runtime=runtime.name)
    caplog.set_level(logging.INFO, logger="streamfit.predictor")
    others = [r for r in runtimes_for(AUTO) if r.name != runtime.name and not r.missing()]
    if not others:
        skip_or_fail_in_ci("no other runtime to fall back to here")
    served = compile_bundle(local.load(version), local.path(version), runtime=AUTO)
    assert served.runtime == others[0].name
    order = [r.name for r in runtimes_for(AUTO)]
    if order.index(runtime.name) < order.index(served.runtime):  # tried first, then passed over
        assert f"{runtime.name} not used for v{version}: " in caplog.text
        assert "not installed" in caplog.text


def test_runtime_names_are_listed_once_and_validated():
    assert tuple(r.name for r in runtimes_for(AUTO)) == RUNTIMES
    assert get_runtime(None).name == "tl2cgen"  # the safe default: the longest served
    with pytest.raises(ValueError, match="unknown model runtime 'onnx'"):
        get_runtime("onnx")
    with pytest.raises(ConfigError, match="model_runtime must be one of"):
        Settings(model_runtime="onnx")


def test_a_model_let_go_is_unmapped_and_a_rebuilt_library_at_its_path_is_loaded_afresh(
    runtime, local
):
    """Nothing of a swapped-out model's library stays mapped (each promotion's would add up),
    and it goes at once, not at some later garbage collection: until then, ``dlopen`` of a
    library rebuilt at the same path would give back the old one."""
    version = local.champion()
    bundle, directory = local.load(version), local.path(version)
    library = directory / runtime.library_file

    def mapped() -> bool:
        return str(library) in Path("/proc/self/maps").read_text()

    compiled = compile_bundle(bundle, directory, runtime=runtime.name)
    assert mapped()
    del compiled
    assert not mapped()
    # rebuilt in place of a damaged one: what is loaded is the new file, not a stale handle
    library.write_bytes(b"\x7fELF not really a library" * 100)
    rebuilt = compile_bundle(bundle, directory, runtime=runtime.name)
    assert rebuilt.compiled and rebuilt.max_abs_diff <= _compiled.TOLERANCE

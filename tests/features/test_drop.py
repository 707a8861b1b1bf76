"""Dropped features (drift-aware retraining): left out at fit and at serving, recorded in state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import load_adult
from streamfit.features import FeaturePipeline


@pytest.fixture(scope="module")
def rows():
    return load_adult("test").head(500)


def test_dropping_a_column_removes_it_and_its_crosses(rows) -> None:
    full = FeaturePipeline(ADULT).fit(rows)
    pipe = FeaturePipeline(ADULT, drop=["occupation", "age"]).fit(rows)
    assert pipe.dropped == ["age", "occupation"]  # canonical column order
    kept = [n for n in full.feature_names if n != "age" and "occupation" not in n.split("*")]
    assert pipe.feature_names == kept
    assert [pipe.feature_names[i] for i in pipe.categorical_features] == [
        n for n in kept if n in full.categories
    ]
    columns = [full.feature_names.index(n) for n in kept]
    np.testing.assert_array_equal(pipe.transform(rows), full.transform(rows)[:, columns])
    records = rows.head(20).astype(object).where(rows.head(20).notna(), None).to_dict("records")
    assert pipe.transform_records(records).shape == (20, len(kept))


def test_state_records_the_dropped_features(rows) -> None:
    pipe = FeaturePipeline(ADULT, drop=["hours_per_week"]).fit(rows)
    state = json.loads(json.dumps(pipe.to_dict()))
    assert state["dropped"] == ["hours_per_week"]
    restored = FeaturePipeline.from_dict(state, ADULT)
    np.testing.assert_array_equal(restored.transform(rows), pipe.transform(rows))


def test_a_state_from_before_contracts_is_refused_with_the_way_out(rows) -> None:
    state = FeaturePipeline(ADULT).fit(rows).to_dict()
    del state["dropped"]
    state["state_version"] = 1
    with pytest.raises(ValueError, match="predates feature contracts.*retrain"):
        FeaturePipeline.from_dict(state, ADULT)


def test_unknown_column_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown feature"):
        FeaturePipeline(ADULT, drop=["shoe_size"])


def test_a_saved_bundle_serves_without_the_dropped_column(rows, tmp_path) -> None:
    import lightgbm as lgb

    from streamfit.models.bundle import ModelBundle

    pipe = FeaturePipeline(ADULT, drop=["age"]).fit(rows)
    data = lgb.Dataset(
        pipe.transform(rows), rows["label"], categorical_feature=pipe.categorical_features
    )
    booster = lgb.train({"objective": "binary", "verbose": -1}, data, num_boost_round=5)
    ModelBundle(booster, pipe, {}).save(tmp_path)
    bundle = ModelBundle.load(tmp_path)
    bundle.validate()  # the model's width matches the restored pipeline's
    records = rows.head(50).astype(object).where(rows.head(50).notna(), None).to_dict("records")
    columns = {name: [r[name] for r in records] for name in records[0]}
    np.testing.assert_array_equal(bundle.predict_records(records), bundle.predict_columns(columns))
    older = [{**r, "age": 90} for r in records]
    np.testing.assert_array_equal(bundle.predict_records(records), bundle.predict_records(older))

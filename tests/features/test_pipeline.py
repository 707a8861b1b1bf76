from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from streamfit.datasets.adult import (
    CATEGORICAL_COLUMNS,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    load_adult,
)
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.features import FeaturePipeline, request_schema

validate_record = request_schema(ADULT).problem


@pytest.fixture(scope="module")
def adult():
    return load_adult("train"), load_adult("test")


@pytest.fixture(scope="module")
def pipeline(adult):
    return FeaturePipeline(ADULT).fit(adult[0])


def _records(frame):
    records = frame[list(FEATURE_COLUMNS)].to_dict("records")
    return [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in records
    ]


def test_loader_handles_test_file_quirks(adult):
    train, test = adult
    assert len(train) == 32561 and len(test) == 16281  # the note line of adult.test is skipped
    assert set(test["income_bracket"]) == {"<=50K", ">50K"}  # trailing '.' stripped
    assert train["workclass"].isna().sum() == 1836  # '?' read as missing
    for column in CATEGORICAL_COLUMNS:
        assert not pd.api.types.is_numeric_dtype(train[column])


def test_json_round_trip_gives_identical_output(adult, pipeline):
    restored = FeaturePipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())), ADULT)
    np.testing.assert_array_equal(pipeline.transform(adult[1]), restored.transform(adult[1]))


def test_batch_equals_row_by_row(adult, pipeline):
    rows = _records(adult[1].head(200))
    batch = pipeline.transform_records(rows)
    single = np.vstack([pipeline.transform_records([row]) for row in rows])
    np.testing.assert_array_equal(batch, single)
    # and the DataFrame path agrees with the records path
    np.testing.assert_array_equal(batch, pipeline.transform(adult[1].head(200)))


def test_unseen_categories_and_missing_values_become_nan(pipeline):
    row = {"age": None, "workclass": "Astronaut", "education": "Bachelors", "occupation": None}
    out = pipeline.transform_records([row])[0]
    names = pipeline.feature_names
    assert np.isnan(out[names.index("age")])
    assert np.isnan(out[names.index("workclass")])
    assert out[names.index("education")] == pipeline.categories["education"].index("Bachelors")
    assert np.isnan(out[names.index("occupation")])
    assert np.isnan(out[names.index("education*occupation")])  # half-missing cross is missing
    assert np.isnan(out[names.index("fnlwgt")])  # absent column is missing


def test_crossed_columns_code_seen_pairs(pipeline):
    pair = pipeline.crosses["education*occupation"][0]
    out = pipeline.transform_records([{"education": pair[0], "occupation": pair[1]}])[0]
    assert out[pipeline.feature_names.index("education*occupation")] == 0


def test_numeric_columns_are_standardised(adult, pipeline):
    out = pipeline.transform(adult[0])
    for i, _ in enumerate(NUMERIC_COLUMNS):
        assert abs(np.nanmean(out[:, i])) < 1e-9
        assert abs(np.nanstd(out[:, i]) - 1) < 1e-9


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "must be an object"),
        ({"age": "39"}, "'age' must be a number"),
        ({"age": True}, "'age' must be a number"),
        ({"workclass": 3}, "'workclass' must be a string"),
        ({"favourite_colour": "red"}, "unknown column"),
    ],
)
def test_validation_gives_reasons(data, reason):
    assert reason in validate_record(data)


def test_validation_accepts_missing_and_label():
    assert validate_record({"age": None, "income_bracket": ">50K", "education": "Masters"}) is None

"""The pipeline and the request schema built from any contract: the bundled data sets of the
"your data" tests, dates, required columns, the native decoder beside msgspec."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from streamfit import messages
from streamfit.contract import infer
from streamfit.datasets import split
from streamfit.features import FeaturePipeline, request_schema
from tests.data_sets import penguins, sklearn_table


def _fitted(frame: pd.DataFrame, label: str, categorical=()):
    contract = infer(frame, label, categorical=categorical).contract
    dataset = split(frame, contract)
    return contract, dataset, FeaturePipeline(contract).fit(dataset.train)


def _requests(frame: pd.DataFrame, columns) -> list[bytes]:
    rows = frame[list(columns)].astype(object).where(frame[list(columns)].notna(), None)
    return [messages.request(f"r{i}", row) for i, row in enumerate(rows.to_dict("records"))]


@pytest.mark.parametrize(
    ("table", "label", "categorical"),
    [
        ("penguins", "species", ()),
        ("penguins", "species", ("year",)),  # levels 2007-2009: numbers, not text (issue 22)
        ("breast_cancer", "target", ()),
        ("diabetes", "target", ()),
    ],
)
def test_numbers_and_categories_decode_natively_as_msgspec_does(table, label, categorical) -> None:
    frame = pd.read_csv(penguins()) if table == "penguins" else sklearn_table(table)
    contract, dataset, pipeline = _fitted(frame, label, categorical)
    assert all(contract.column(name).levels == (2007, 2008, 2009) for name in categorical)
    values = _requests(dataset.test, contract.features)
    native = messages.parse_requests(values, pipeline)
    assert native.native is not None, "a contract of numbers and categories stays on the C path"
    reference = messages.parse_requests(values, schema=request_schema(contract))
    assert native.ids == reference.ids and not reference.rejected
    np.testing.assert_array_equal(native.features(pipeline), pipeline.transform(reference.columns))


def test_a_table_with_dates_ids_and_text_gets_date_parts_and_no_unused_column() -> None:
    raw = pd.read_csv(penguins(raw=True))
    contract, dataset, pipeline = _fitted(raw, "Species")
    assert "Date Egg" in contract.names("datetime")
    assert "Comments" in contract.ignored and "Comments" not in contract.features
    names = pipeline.feature_names
    assert {"Date Egg.year", "Date Egg.month", "Date Egg.weekday"} <= set(names)
    matrix = pipeline.transform(dataset.test)
    years = matrix[:, names.index("Date Egg.year")]
    assert set(years[~np.isnan(years)]) <= {2007.0, 2008.0, 2009.0}
    # Requests carry dates as text: decoded by msgspec (the native decoder takes no dates).
    values = _requests(dataset.test, contract.features)
    batch = messages.parse_requests(values, pipeline)
    assert batch.native is None and not batch.rejected
    np.testing.assert_array_equal(batch.features(pipeline), matrix)
    # The state and the contract round-trip through JSON, as a bundle stores them.
    again = FeaturePipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())), contract)
    np.testing.assert_array_equal(again.transform(dataset.test), matrix)


def test_a_request_breaking_the_contract_is_refused_naming_the_column() -> None:
    frame = pd.read_csv(penguins())
    contract, _, pipeline = _fitted(frame, "species")
    assert contract.column("island").required and not contract.column("sex").required
    good = {"island": "Dream", "year": 2008, "sex": None, "bill_length_mm": 40.1}
    cases = {
        "ok": good,
        "absent": {k: v for k, v in good.items() if k != "island"},
        "null": {**good, "year": None},
        "type": {**good, "island": 3},
        "unknown": {**good, "wingspan": 1.0},
    }
    values = [messages.request(name, data) for name, data in cases.items()]
    batch = messages.parse_requests(values, pipeline)
    assert batch.ids == ["ok"]
    reasons = {error.request_id: str(error) for _, error in batch.rejected}
    assert reasons == {
        "absent": "missing required column 'island'",
        "null": "column 'year' is required, got null",
        "type": "column 'island' must be a string, got int",
        "unknown": "unknown column 'wingspan'",
    }
    ignoring = request_schema(contract, "ignore")
    assert messages.parse_requests(values[-1:], schema=ignoring).ids == ["unknown"]

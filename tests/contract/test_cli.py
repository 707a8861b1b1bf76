"""``streamfit contract infer`` through the real command line entry point."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from streamfit.cli import main
from streamfit.contract import Contract


def test_infer_prints_every_decision_and_writes_the_contract(
    penguins_raw_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "contract.json"
    code = main(
        ["contract", "infer", str(penguins_raw_csv), "--label", "Species", "--output", str(output)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    lines = printed.splitlines()
    assert lines[:2] == ["344 rows", "task: multiclass (3 distinct string values in 'Species')"]
    header = next(line for line in lines if "levels or range" in line).split()
    assert header == ["column", "kind", "type", "levels", "or", "range", "missing", "reason"]
    rows = {line.split("  ")[1]: line for line in lines if line.startswith("  ")}
    assert "dropped" in rows["Comments"] and "free text" in rows["Comments"]
    assert "datetime" in rows["Date Egg"] and "2007-11-09 to 2009-12-01" in rows["Date Egg"]
    assert "constant" in rows["Region"]
    assert lines[-1] == f"contract written to {output}"
    contract = Contract.load(output)
    assert contract.task == "multiclass" and contract.ignored == ("Region", "Stage", "Comments")


def test_overrides_from_the_command_line(
    penguins_raw_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "contract.json"
    code = main(
        [
            "contract",
            "infer",
            str(penguins_raw_csv),
            "--label",
            "Sex",
            "--positive-class",
            "MALE",
            "--id-column",
            "Individual ID",
            "--time-column",
            "Date Egg",
            "--ignore",
            "Sample Number",
            "studyName",
            "--categorical",
            "Flipper Length (mm)",
            "--output",
            str(output),
        ]
    )
    assert code == 0, capsys.readouterr().err
    contract = Contract.load(output)
    assert (contract.task, contract.positive_class) == ("binary", "MALE")
    assert (contract.id_column, contract.time_column) == ("Individual ID", "Date Egg")
    assert contract.ignored[:2] == ("studyName", "Sample Number")  # in the table's order
    assert contract.column("Flipper Length (mm)").kind == "categorical"


def test_a_database_table(
    penguins_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'penguins.db'}"
    engine = sa.create_engine(url)
    pd.read_csv(penguins_csv).to_sql("penguins", engine, index=False)
    engine.dispose()
    output = tmp_path / "contract.json"
    args = ["contract", "infer", url, "--table", "penguins", "--label", "species"]
    assert main([*args, "--output", str(output)]) == 0
    assert Contract.load(output).classes == ("Adelie", "Chinstrap", "Gentoo")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "nope"], "no label column 'nope'; the columns are species, island"),
        (["--label", "species", "--task", "binary"], "--task binary: label 'species' has 3"),
        (["--label", "species", "--table", "t"], "--table and --query are for database URLs"),
        (["--label", "species", "--numeric", "wings"], "--numeric: no column 'wings'"),
    ],
)
def test_errors_exit_2_with_one_line_and_write_nothing(
    penguins_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    output = tmp_path / "contract.json"
    code = main(["contract", "infer", str(penguins_csv), *args, "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("streamfit contract: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert captured.out == ""
    assert not output.exists()

"""Sources: CSV, Parquet and SQL give the same contract; bad input is one clear ContractError."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from streamfit.contract import ContractError, infer, infer_source, read_source


@pytest.fixture
def penguins_db(tmp_path: Path, penguins_csv: Path) -> str:
    """penguins.csv as the table ``penguins`` of an SQLite file."""
    url = f"sqlite:///{tmp_path / 'penguins.db'}"
    engine = sa.create_engine(url)
    read_source(penguins_csv).to_sql("penguins", engine, index=False)
    engine.dispose()
    return url


def test_parquet_gives_the_csv_contract(tmp_path: Path, penguins_raw_csv: Path) -> None:
    path = tmp_path / "penguins.parquet"
    read_source(penguins_raw_csv).to_parquet(path, engine="pyarrow")
    from_csv = infer_source(str(penguins_raw_csv), "Species").contract
    assert infer_source(str(path), "Species").contract == from_csv


def test_sql_table_and_query(penguins_db: str, penguins_csv: Path) -> None:
    from_csv = infer_source(str(penguins_csv), "species").contract
    assert infer_source(penguins_db, "species", table="penguins").contract == from_csv
    query = "SELECT species, island, bill_length_mm FROM penguins WHERE year > 2007"
    contract = infer_source(penguins_db, "species", query=query).contract
    assert contract.features == ("island", "bill_length_mm")


def test_sql_mixed_types_are_refused(tmp_path: Path) -> None:
    """SQLite stores what it is given: a column of numbers and text is refused, by name."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.exec_driver_sql("CREATE TABLE t (x, y)")
        db.exec_driver_sql("INSERT INTO t VALUES (1, 'a'), ('two', 'b'), (3, 'a'), (4, 'b')")
    engine.dispose()
    with pytest.raises(ContractError, match=r"column 'x' mixes types: number \(1\) and string"):
        infer_source(url, "y", table="t")


def one_line_error(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(ContractError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unreadable_sources(tmp_path: Path, penguins_db: str) -> None:
    assert one_line_error(read_source, tmp_path / "absent.csv").endswith("absent.csv: no such file")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    assert "broken.parquet: cannot read it (" in one_line_error(read_source, broken)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert one_line_error(read_source, empty).endswith("empty.csv: the file is empty")
    header_only = tmp_path / "header.csv"
    header_only.write_text("x,y\n")
    assert one_line_error(read_source, header_only).endswith("header.csv: no rows")
    assert "not a CSV or Parquet file" in one_line_error(read_source, tmp_path / "data.xlsx")
    assert "are for database URLs" in one_line_error(read_source, empty, table="t")


def test_sql_errors(tmp_path: Path, penguins_db: str) -> None:
    assert "give a database source --table" in one_line_error(read_source, penguins_db)
    assert one_line_error(read_source, penguins_db, table="absent").endswith("no table 'absent'")
    message = one_line_error(read_source, penguins_db, query="SELEKT 1")
    assert 'SQL error (OperationalError: near "SELEKT": syntax error)' in message
    absent = f"sqlite:///{tmp_path / 'absent.db'}"
    assert "no such file" in one_line_error(read_source, absent, table="t")
    assert not (tmp_path / "absent.db").exists()
    empty = one_line_error(read_source, penguins_db, query="SELECT * FROM penguins WHERE 0")
    assert empty.endswith(": no rows")


def test_a_database_password_is_never_shown() -> None:
    url = "postgresql+psycopg://user:secret@127.0.0.1:1/db"
    message = one_line_error(read_source, url, table="t")
    assert "secret" not in message
    assert "***" in message


@pytest.mark.parametrize(
    ("frame", "label", "message"),
    [
        (pd.DataFrame({"x": [1, 2]}), "y", "no label column 'y'; the columns are x"),
        (pd.DataFrame({"x": [1, 2], "y": ["a", "a"]}), "y", "label column 'y' has one value ('a')"),
        (pd.DataFrame({"x": [1, 2], "y": [None, None]}), "y", "label column 'y' has no values"),
        (pd.DataFrame({"x": [], "y": []}), "y", "the table has no rows"),
        (
            pd.DataFrame({"x": [1, "b", 3.5], "y": [0, 1, 0]}),
            "y",
            "column 'x' mixes types: number (1) and string ('b')",
        ),
        (
            pd.DataFrame({"x": ["1", "2", "3", "unknown"], "y": [0, 1, 0, 1]}),
            "y",
            "column 'x' mixes numbers and text (such as 'unknown')",
        ),
        (
            pd.DataFrame({"x": [1, 2, 3], "y": ["a", 2, "b"]}),
            "y",
            "column 'y' mixes types: number (2) and string ('a')",
        ),
    ],
    ids=["no-label", "one-value", "no-label-values", "empty", "mixed", "mixed-text", "mixed-label"],
)
def test_bad_frames(frame: pd.DataFrame, label: str, message: str) -> None:
    assert message in one_line_error(infer, frame, label)


def test_task_overrides_that_cannot_hold() -> None:
    three = pd.DataFrame({"x": range(6), "y": ["a", "b", "c"] * 2})
    assert "has 3 distinct values" in one_line_error(infer, three, "y", task="binary")
    assert "is not numeric" in one_line_error(infer, three, "y", task="regression")
    assert "is for a binary task" in one_line_error(infer, three, "y", positive_class="a")
    two = pd.DataFrame({"x": range(6), "y": ["a", "b"] * 3})
    assert "is not a value of 'y' (a, b)" in one_line_error(infer, two, "y", positive_class="c")
    times = pd.DataFrame({"x": range(6), "when": ["a", "b"] * 3, "y": [0, 1] * 3})
    message = one_line_error(infer, times, "y", time_column="when")
    assert "--time-column 'when' holds neither dates nor numbers" in message

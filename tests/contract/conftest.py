"""The contract tests' data: real tables shipped inside packages (nothing is downloaded)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes


def penguins_file(name: str) -> Path:
    """palmerpenguins' CSV, located through the package's metadata (importing it would load
    every table)."""
    return Path(
        str(metadata.distribution("palmerpenguins").locate_file(f"palmerpenguins/data/{name}"))
    )


@pytest.fixture(scope="session")
def penguins_csv() -> Path:
    return penguins_file("penguins.csv")


@pytest.fixture(scope="session")
def penguins_raw_csv() -> Path:
    return penguins_file("penguins-raw.csv")


@pytest.fixture(scope="session")
def breast_cancer() -> pd.DataFrame:
    """scikit-learn's bundled copy: 30 numeric columns, a 0/1 ``target`` (0 = malignant)."""
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    """scikit-learn's bundled copy, unscaled: 10 numeric columns, a numeric ``target``."""
    return load_diabetes(as_frame=True, scaled=False).frame

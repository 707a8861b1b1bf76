"""The bundled example: the UCI Adult data set, vendored (gzip) inside the package.

Source: Becker & Kohavi (1996), UCI Machine Learning Repository, CC BY 4.0 (see datasets/README.md).
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..contract import Contract
from . import adult_dataset, table_requests

# Adult's contract: inferred from adult.data by ``streamfit contract infer``, then edited as a
# user would: every column optional (the example has always taken partial rows) and the two
# crosses of the reference design.
CONTRACT = Contract.load(Path(str(resources.files("streamfit.datasets") / "adult.contract.json")))
NUMERIC_COLUMNS = CONTRACT.names("numeric")
CATEGORICAL_COLUMNS = CONTRACT.names("categorical")
FEATURE_COLUMNS = CONTRACT.features
LABEL_COLUMN = "income_bracket"
POSITIVE_LABEL = ">50K"
ALL_COLUMNS = (*FEATURE_COLUMNS, LABEL_COLUMN)


def headerless_columns(frame: pd.DataFrame) -> list[str] | None:
    """Adult's column names for a frame read from adult.data or adult.test, whose first row was
    taken for a header (none of Adult's names, Adult's width); None for any other frame."""
    if set(FEATURE_COLUMNS) & set(map(str, frame.columns)):
        return None
    if frame.shape[1] not in (len(FEATURE_COLUMNS), len(ALL_COLUMNS)):
        return None
    return list(ALL_COLUMNS)[: frame.shape[1]]


def contract_of_rows(frame: pd.DataFrame) -> Contract | None:
    """Adult's contract for rows of the example (any of its features), else None."""
    return CONTRACT if set(FEATURE_COLUMNS) & set(map(str, frame.columns)) else None


def label_to_int(value: object) -> int | None:
    """Map a raw income bracket (``'>50K'``, ``'<=50K.'``) or a 0/1 label to 0/1, else None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, str):
        text = value.strip().rstrip(".")
        if text == POSITIVE_LABEL:
            return 1
        if text == "<=50K":
            return 0
    return None


def load_adult(split: Literal["train", "test"] = "train") -> pd.DataFrame:
    """Load adult.data ('train') or adult.test ('test') with clean labels and '?' as missing.

    The test file's first line is a note, not data, and its labels end with '.': both handled here.
    Returns the 14 feature columns plus ``income_bracket`` and an integer ``label`` column.
    """
    name = {"train": "adult.data.gz", "test": "adult.test.gz"}[split]
    source = resources.files("streamfit.datasets").joinpath(name)
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        frame = pd.read_csv(
            text,
            names=list(ALL_COLUMNS),
            skiprows=1 if split == "test" else 0,
            sep=",",
            skipinitialspace=True,
            na_values="?",
            skip_blank_lines=True,
        )
    frame = frame.dropna(subset=[LABEL_COLUMN]).reset_index(drop=True)
    frame[LABEL_COLUMN] = frame[LABEL_COLUMN].str.rstrip(".")
    frame["label"] = (frame[LABEL_COLUMN] == POSITIVE_LABEL).astype("int8")
    for column in NUMERIC_COLUMNS:
        frame[column] = frame[column].astype("float64")
    return frame


def requests(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` rows of adult.test as request data (the label riding along), cycling."""
    return table_requests(adult_dataset(), count, seed)

"""The type of a column's values: numbers, text, booleans or dates, whatever pandas read.

pandas 3 reads text as its ``str`` dtype, a database's mixed column as ``object``: the tests here
are "numeric or not" and the values' own types, never ``dtype == object`` alone.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format

from ._contract import ContractError, Scalar, ValueType

DATE_PARSED_SHARE = 0.8
NUMBER_SHARE_FOR_MIXED = 0.5  # text mostly of numbers, yet not all: a mixed column


def typed(name: str, values: pd.Series, check_mixed: bool = True) -> tuple[ValueType, pd.Series]:
    """The type of a column's values, and the values as that type (text that is dates becomes
    datetimes). A column of mixed types raises ContractError unless ``check_mixed`` is off."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if ptypes.is_bool_dtype(values):
        return "boolean", values
    if ptypes.is_numeric_dtype(values):
        present = values.dropna()
        return ("integer" if ((present % 1) == 0).all() else "float"), values
    if ptypes.is_datetime64_any_dtype(values):
        return "datetime", values
    present = values.dropna()
    examples: dict[str, Any] = {}  # a value of each type, pandas' str dtype holding only text
    for value in present.unique() if values.dtype == object else present.iloc[:1]:
        examples.setdefault(_kind_of(value), value)
    if len(examples) > 1:
        shown = " and ".join(f"{kind} ({value!r})" for kind, value in sorted(examples.items()))
        raise ContractError(f"column {name!r} mixes types: {shown}")
    kind = next(iter(examples), "string")
    if kind == "number":
        return typed(name, pd.to_numeric(values))
    if kind == "boolean":
        return "boolean", values
    if kind == "datetime":
        return "datetime", as_datetimes(values)
    if not ptypes.is_string_dtype(values):
        values = values.astype("str").where(values.notna())
    distinct = pd.Series(present.unique()).astype("str")
    numbers = pd.to_numeric(distinct, errors="coerce").notna().mean() if len(distinct) else 0.0
    if check_mixed and NUMBER_SHARE_FOR_MIXED <= numbers < 1:
        text = distinct[pd.to_numeric(distinct, errors="coerce").isna()].iloc[0]
        raise ContractError(
            f"column {name!r} mixes numbers and text (such as {text!r}): make that text "
            f"missing, or pass --numeric or --categorical {name!r}"
        )
    if numbers == 0 and len(distinct) and _parsed_date_share(distinct) >= DATE_PARSED_SHARE:
        return "datetime", as_datetimes(values)
    return "string", values


def _kind_of(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | float | np.number):
        return "number"
    if isinstance(value, pd.Timestamp | np.datetime64) or hasattr(value, "isoformat"):
        return "datetime"
    return "string" if isinstance(value, str) else type(value).__name__


def _parsed_date_share(distinct: pd.Series) -> float:
    """Share of ``distinct`` that parses as dates, in the format of the first one; 0 when
    pandas cannot infer a format (so "A1" is never a date through a lenient parser)."""
    date_format = guess_datetime_format(str(distinct.iloc[0]))
    if date_format is None:
        return 0.0
    parsed = pd.to_datetime(distinct, format=date_format, errors="coerce", utc=True)
    return float(parsed.notna().mean())


def as_datetimes(values: pd.Series) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(values):
        return values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        present = values.dropna()
        first = str(present.iloc[0]) if len(present) else ""
        date_format = guess_datetime_format(first) if first else None
        return pd.to_datetime(values, format=date_format, errors="coerce", utc=True)


def json_scalar(value: Any) -> Scalar:
    """A JSON scalar: numpy's become Python's, whole floats integers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value

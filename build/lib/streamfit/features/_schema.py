"""Validation of one request's ``data`` against the Adult schema: cheap, and never raises."""

from __future__ import annotations

from typing import Any

import msgspec

from ..data import CATEGORICAL_COLUMNS, LABEL_COLUMN, NUMERIC_COLUMNS

_NUMERIC = frozenset(NUMERIC_COLUMNS)
_CATEGORICAL = frozenset(CATEGORICAL_COLUMNS)


def validate_record(data: Any) -> str | None:
    """Return why ``data`` cannot be predicted, or None when it can.

    Numbers must be JSON numbers (not booleans, not strings), categories strings; ``null`` or an
    absent column means missing. The true label (``income_bracket``) may ride along in demo mode.
    """
    if not isinstance(data, dict):
        return f"'data' must be an object, got {type(data).__name__}"
    for name, value in data.items():
        if value is None:
            continue
        if name in _NUMERIC:
            if type(value) not in (int, float):  # excludes bool, a subclass of int
                return f"column {name!r} must be a number, got {type(value).__name__}"
            if value != value or value in (float("inf"), float("-inf")):
                return f"column {name!r} must be finite"
        elif name in _CATEGORICAL:
            if not isinstance(value, str):
                return f"column {name!r} must be a string, got {type(value).__name__}"
        elif name != LABEL_COLUMN:
            return f"unknown column {name!r}"
    return None


# The same schema for msgspec, which checks a whole request while decoding it (in C): numbers are
# JSON numbers within float range (not booleans), categories strings, null or absent is missing,
# any other column is refused. The predictor decodes with it and calls validate_record only to
# word the reason of a message it refused.
RECORD_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS, LABEL_COLUMN)
Record = msgspec.defstruct(
    "Record",
    [
        *((name, int | float | None, None) for name in NUMERIC_COLUMNS),
        *((name, str | None, None) for name in CATEGORICAL_COLUMNS),
        (LABEL_COLUMN, Any, None),
    ],
    forbid_unknown_fields=True,
    gc=False,  # scalars only: no reference cycles to collect
)

"""Feature pipeline: a contract's columns as a float matrix for LightGBM.

Numbers are standardised, categories integer-coded (their levels fixed at fit, unseen values
and missing ones NaN, LightGBM's "missing"), dates expanded into parts a tree can split on
(year, month, day, weekday, hour), and the contract's crosses added: one code per pair of levels
seen together at least ``min_cross_count`` times. ``transform`` works on whole columns with
NumPy (no per-row ``apply``), and the fitted state is plain lists and floats that round-trip
through JSON.

``drop`` leaves raw columns out (with every cross built on them): a drift-aware retrain drops the
features that drifted, and the state records them, so serving drops exactly the same columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import msgspec
import numpy as np

from .._native import RowDecoder
from ..contract import Contract
from ._schema import decoded_type

DATE_PARTS = ("year", "month", "day", "weekday", "hour")
NATIVE_FIELD_LIMIT = 64  # the native decoder tracks a request's keys in one 64-bit mask

Columns = Mapping[str, Sequence[Any] | np.ndarray]


class FeaturePipeline:
    """Fit on a batch of a contract's raw columns, then transform batches into a float matrix.

    >>> from streamfit.contract import ColumnSpec, Contract
    >>> contract = Contract("regression", "y", (ColumnSpec("age", "numeric", "float"),
    ...     ColumnSpec("education", "categorical", "string", levels=("HS-grad", "Masters"))))
    >>> pipe = FeaturePipeline(contract).fit(
    ...     {"age": [20.0, 40.0], "education": ["HS-grad", "Masters"]})
    >>> pipe.transform({"age": [30.0], "education": ["Doctorate"]}).tolist()
    [[0.0, nan]]
    """

    STATE_VERSION = 3  # 3: the columns come from the contract (1 and 2 were Adult's only)

    def __init__(self, contract: Contract, min_cross_count: int = 5, drop: Sequence[str] = ()):
        if min_cross_count < 1:
            raise ValueError(f"min_cross_count must be at least 1, got {min_cross_count}")
        unknown = sorted(set(drop) - set(contract.features))
        if unknown:
            raise ValueError(f"cannot drop unknown feature column(s) {unknown}")
        self.contract = contract
        self.min_cross_count = min_cross_count
        self.dropped = [name for name in contract.features if name in set(drop)]
        self.numeric_columns = contract.names("numeric")
        self.categorical_columns = contract.names("categorical")
        self.datetime_columns = contract.names("datetime")
        self.cross_columns = tuple(tuple(pair) for pair in contract.crosses)
        # The raw columns, first in the matrix: numbers as given, categories as codes; then
        # the date parts and the crosses, written by transform_raw.
        self.raw_columns = (*self.numeric_columns, *self.categorical_columns)
        self._raw_index = {name: i for i, name in enumerate(self.raw_columns)}
        self._all_names = (
            *self.raw_columns,
            *(f"{name}.{part}" for name in self.datetime_columns for part in DATE_PARTS),
            *(f"{a}*{b}" for a, b in self.cross_columns),
        )
        # Fitted state: plain attributes, JSON-serialisable.
        self.numeric: dict[str, tuple[float, float]] = {}  # column -> (mean, std)
        self.categories: dict[str, list[Any]] = {}  # column -> levels, code = index
        self.crosses: dict[str, list[tuple[Any, Any]]] = {}  # "a*b" -> kept (a, b) pairs
        self._index: dict[str, dict[Any, float]] = {}
        self._means = self._stds = np.empty(0)
        self._cross_tables: dict[str, np.ndarray] = {}
        self._fitted = False
        # Output columns kept from the full matrix; None when nothing is dropped (no copy).
        full, kept = self._all_names, self.feature_names
        self._keep = np.array([full.index(n) for n in kept]) if len(kept) < len(full) else None

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, columns: Columns) -> FeaturePipeline:
        present = set(columns)
        for name in self.numeric_columns:
            values = _as_float(columns[name]) if name in present else np.array([np.nan])
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
            std = float(np.nanstd(values)) if np.isfinite(values).any() else 1.0
            self.numeric[name] = (mean, std if std > 0 else 1.0)
        for name in self.categorical_columns:
            levels = self.contract.column(name).levels
            values = columns[name] if name in present else []
            counts: dict[Any, int] = {}
            for value in values:
                if _is_level(value):
                    counts[value] = counts.get(value, 0) + 1
            # Most frequent first, ties by name: a stable, readable code assignment. A contract
            # with levels keeps to them (a level it does not list is missing at serving too).
            if levels:
                counts = {level: counts.get(level, 0) for level in levels}
            self.categories[name] = sorted(counts, key=lambda v: (-counts[v], str(v)))
        self._build_index()
        for left, right in self.cross_columns:
            a, b = self._codes(left, columns), self._codes(right, columns)
            ok = ~(np.isnan(a) | np.isnan(b))
            pairs, counts = np.unique(
                np.stack([a[ok], b[ok]], axis=1).astype(np.int64), axis=0, return_counts=True
            )
            kept = pairs[counts >= self.min_cross_count]
            self.crosses[f"{left}*{right}"] = [
                (self.categories[left][i], self.categories[right][j]) for i, j in kept
            ]
        self._build_cross_tables()
        self._fitted = True
        return self

    @property
    def feature_names(self) -> list[str]:
        dropped = set(self.dropped)
        return [n for n in self._all_names if not dropped & _sources(n)]

    @property
    def categorical_features(self) -> list[int]:
        """Indices of the columns LightGBM must treat as categorical."""
        numeric = {
            *self.numeric_columns,
            *(f"{d}.{p}" for d in self.datetime_columns for p in DATE_PARTS),
        }
        return [i for i, n in enumerate(self.feature_names) if n not in numeric]

    # -- transforming ---------------------------------------------------------------------------
    def transform(self, columns: Columns) -> np.ndarray:
        """Raw columns (a DataFrame, or a dict of lists/arrays) -> float64 matrix.

        A column that is absent counts as missing everywhere.
        """
        if not self._fitted:
            raise RuntimeError("FeaturePipeline is not fitted: call fit() or from_dict() first")
        rows = _row_count(columns)
        raw = np.empty((rows, len(self._all_names)), dtype=np.float64)
        for i, name in enumerate(self.numeric_columns):
            raw[:, i] = _as_float(columns[name]) if name in columns else np.nan
        for i, name in enumerate(self.categorical_columns, start=len(self.numeric_columns)):
            raw[:, i] = self._codes(name, columns, rows)
        start = len(self.raw_columns)
        for name in self.datetime_columns:
            raw[:, start : start + len(DATE_PARTS)] = _date_parts(columns.get(name), rows)
            start += len(DATE_PARTS)
        return self.transform_raw(raw)

    def transform_raw(self, raw: np.ndarray) -> np.ndarray:
        """Finish a matrix whose first columns hold a batch's raw values, in ``raw_columns``
        order: the numbers as given and each category's code (its index in ``categories``),
        NaN where missing or unseen, then the date parts; the crosses are written here. Scales
        the numbers in place and returns the model's matrix.

        ``transform`` ends here, and so does the predictor's native decoder
        (``streamfit.messages``), which writes the raw values straight from the JSON bytes."""
        if raw.shape[1:] != (len(self._all_names),):
            raise ValueError(f"expected {len(self._all_names)} columns, got {raw.shape[1:]}")
        numbers = raw[:, : len(self.numeric_columns)]
        np.subtract(numbers, self._means, out=numbers)
        np.divide(numbers, self._stds, out=numbers)
        first_cross = len(self._all_names) - len(self.cross_columns)
        for offset, (left, right) in enumerate(self.cross_columns):
            table = self._cross_tables[f"{left}*{right}"]
            # Missing codes (NaN) map to the table's last row/column, which holds NaN.
            a = np.nan_to_num(raw[:, self._raw_index[left]], nan=table.shape[0] - 1)
            b = np.nan_to_num(raw[:, self._raw_index[right]], nan=table.shape[1] - 1)
            raw[:, first_cross + offset] = table[a.astype(np.intp), b.astype(np.intp)]
        return raw if self._keep is None else raw[:, self._keep]

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Transform a batch of JSON-like dicts."""
        names = (*self.raw_columns, *self.datetime_columns)
        return self.transform({name: [r.get(name) for r in records] for name in names})

    def row_decoder(self, id_key: str, data_key: str) -> RowDecoder | None:
        """A native decoder of JSON objects ``{id_key: str, data_key: {column: value}}`` into
        this pipeline's raw columns, for :meth:`transform_raw` (see ``streamfit/_native.c``): its
        ``decode(values, raw)`` fills ``raw``'s rows and returns the ids, or None when a
        message needs the full decoder (msgspec). None when the contract has dates (parsed in
        Python) or more columns than the decoder tracks.

        It matches a category by how the JSON spells it (:func:`_spellings`): a string by its
        text, a number or a boolean by its JSON text (the level 2007 as ``2007``, True as
        ``true``), each with the code this pipeline gives the value msgspec reads from it, so
        both paths agree; an unknown spelling (``2007.0``, ``1`` for a boolean) sends the
        message to msgspec, but for an integer of a column of numbers: unseen, as here. The
        label and the contract's unused columns may ride along, never read; a required column
        absent or null sends the message to msgspec, which words the reason."""
        contract = self.contract
        ignored = [contract.label, *contract.unused_columns]
        if self.datetime_columns or len(self.raw_columns) + len(ignored) > NATIVE_FIELD_LIMIT:
            return None
        types = {name: decoded_type(contract.column(name)) for name in self.categorical_columns}
        tokens = [name for name, kind in types.items() if kind is not str]
        spellings = [(name, _spellings(self._index[name], kind)) for name, kind in types.items()]
        return RowDecoder(
            id_key=id_key,
            data_key=data_key,
            numbers=self.numeric_columns,
            categories=spellings,
            ignored=ignored,
            width=self.raw_width,
            required=[spec.name for spec in contract.columns if spec.required],
            tokens=tokens,
            integers=[name for name in tokens if types[name] is not bool],
        )

    @property
    def raw_width(self) -> int:
        """Columns of the matrix :meth:`transform_raw` takes."""
        return len(self._all_names)

    def _codes(self, name: str, columns: Columns, rows: int | None = None) -> np.ndarray:
        if name not in columns:
            return np.full(rows if rows is not None else _row_count(columns), np.nan)
        index = self._index[name]
        values = columns[name]
        # map() with a second iterable calls index.get(v, nan) in C: no Python frame per value.
        return np.fromiter(map(index.get, values, repeat(math.nan)), np.float64, len(values))

    def _build_index(self) -> None:
        self._index = {
            name: {value: float(code) for code, value in enumerate(values)}
            for name, values in self.categories.items()
        }
        self._means = np.array([self.numeric[name][0] for name in self.numeric_columns])
        self._stds = np.array([self.numeric[name][1] for name in self.numeric_columns])

    def _build_cross_tables(self) -> None:
        """A dense (codes of a + 1) x (codes of b + 1) lookup; the extra row/column is 'missing'."""
        self._cross_tables = {}
        for left, right in self.cross_columns:
            key = f"{left}*{right}"
            table = np.full(
                (len(self.categories[left]) + 1, len(self.categories[right]) + 1), np.nan
            )
            for code, (a, b) in enumerate(self.crosses[key]):
                table[int(self._index[left][a]), int(self._index[right][b])] = code
            self._cross_tables[key] = table

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted state; the contract is saved beside it (the bundle's ``contract.json``)."""
        return {
            "state_version": self.STATE_VERSION,
            "min_cross_count": self.min_cross_count,
            "dropped": list(self.dropped),
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "categories": self.categories,
            "crosses": {k: [list(p) for p in v] for k, v in self.crosses.items()},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], contract: Contract) -> FeaturePipeline:
        if state.get("state_version") != cls.STATE_VERSION:
            raise ValueError(
                f"pipeline state version {state.get('state_version')!r} predates feature "
                f"contracts (this streamfit reads {cls.STATE_VERSION}): retrain the model"
            )
        pipe = cls(contract, int(state["min_cross_count"]), drop=state.get("dropped", ()))
        pipe.numeric = {k: (float(m), float(s)) for k, (m, s) in state["numeric"].items()}
        pipe.categories = {k: list(vs) for k, vs in state["categories"].items()}
        pipe.crosses = {k: [(a, b) for a, b in v] for k, v in state["crosses"].items()}
        missing = set(pipe.numeric_columns) - set(pipe.numeric) | set(
            pipe.categorical_columns
        ) - set(pipe.categories)
        if missing:
            raise ValueError(f"pipeline state lacks columns: {sorted(missing)}")
        pipe._build_index()
        pipe._build_cross_tables()
        pipe._fitted = True
        return pipe


def _sources(name: str) -> set[str]:
    """The raw columns an output column is made of: ``a*b`` of a and b, ``d.year`` of d."""
    if "*" in name:
        return set(name.split("*"))
    return {name.rsplit(".", 1)[0], name} if "." in name else {name}


def _is_level(value: Any) -> bool:
    """A value that can be a category's level: text, a boolean or a whole number."""
    return isinstance(value, str | bool | int) and not isinstance(value, float)


def _spellings(index: Mapping[Any, float], decoded: Any) -> dict[str, float]:
    """How requests spell a category's values (the native decoder's table), each with the code
    of the value msgspec decodes from it (``index.get``, NaN for none), as the Python path gives
    it. A column of strings: its text levels. Of numbers or booleans (``decoded``, msgspec's
    type): each level's JSON text, ``true`` and ``false``, and every integer that has a code as
    ``str(int)`` spells it (1 for the level True, 2007 for 2007.0): so an integer spelled so and
    not listed is equal to no level. A spelling msgspec refuses for the type is left out."""
    if decoded is str:
        return {level: code for level, code in index.items() if isinstance(level, str)}
    texts = {"true", "false"}
    for level in index:
        if isinstance(level, float) and math.isfinite(level):
            texts.add(msgspec.json.encode(level).decode())
        if isinstance(level, int) or isinstance(level, float) and level.is_integer():
            texts.add(str(int(level)))
    spellings = {}
    for text in texts:
        try:
            value = msgspec.json.decode(text, type=decoded)
        except msgspec.ValidationError:
            continue
        spellings[text] = index.get(value, math.nan)
    return spellings


def _date_parts(values: Sequence[Any] | np.ndarray | None, rows: int) -> np.ndarray:
    """(rows, len(DATE_PARTS)): year, month, day, weekday (Monday 0) and hour of ISO 8601
    dates; NaN where a value is missing or not a date."""
    if values is None:
        return np.full((rows, len(DATE_PARTS)), np.nan)
    import pandas as pd  # only contracts with dates need it

    stamps = pd.to_datetime(pd.Series(list(values), dtype=object), errors="coerce", utc=True)
    parts = [stamps.dt.year, stamps.dt.month, stamps.dt.day, stamps.dt.weekday, stamps.dt.hour]
    return np.column_stack([part.to_numpy(dtype=np.float64, na_value=np.nan) for part in parts])


def _as_float(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    # None -> NaN (NumPy does it for float64); validation upstream guarantees numbers or None.
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _row_count(columns: Columns) -> int:
    for name in columns:  # works for a dict and for a DataFrame alike
        return len(columns[name])
    return 0

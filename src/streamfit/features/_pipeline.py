"""Feature pipeline: scaled numerics, integer-coded categoricals and two crossed columns.

Mirrors the reference design's feature columns (numeric columns standardised, categoricals
encoded, crosses education x occupation and native_country x occupation) in a form built for a
streaming predictor: ``transform`` works on whole columns with NumPy (no pandas, no per-row
``apply``), unseen categories and missing values become NaN (LightGBM's "missing"), and the
fitted state is plain lists and floats that round-trip through JSON.

``drop`` leaves raw columns out (with every cross built on them): a drift-aware retrain drops the
features that drifted, and the state records them, so serving drops exactly the same columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from .._native import RowDecoder
from ..data import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, LABEL_COLUMN, NUMERIC_COLUMNS

CROSSES: tuple[tuple[str, str], ...] = (
    ("education", "occupation"),
    ("native_country", "occupation"),
)
# The raw columns, first in the matrix: numbers as given, categories as codes.
RAW_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)
_RAW_INDEX = {name: i for i, name in enumerate(RAW_COLUMNS)}
# Every output column, before any is dropped.
_ALL_FEATURE_NAMES = (*RAW_COLUMNS, *(f"{a}*{b}" for a, b in CROSSES))

Columns = Mapping[str, Sequence[Any] | np.ndarray]


class FeaturePipeline:
    """Fit on a batch of raw Adult columns, then transform batches into a float matrix.

    >>> pipe = FeaturePipeline().fit({"age": [20.0, 40.0], "education": ["HS-grad", "Masters"]})
    >>> pipe.transform({"age": [30.0], "education": ["Doctorate"]})[0, :1].tolist()
    [0.0]
    """

    STATE_VERSION = 2  # 2 added "dropped"; version 1 states (nothing dropped) still load

    def __init__(self, min_cross_count: int = 5, drop: Sequence[str] = ()) -> None:
        if min_cross_count < 1:
            raise ValueError(f"min_cross_count must be at least 1, got {min_cross_count}")
        unknown = sorted(set(drop) - set(FEATURE_COLUMNS))
        if unknown:
            raise ValueError(f"cannot drop unknown feature column(s) {unknown}")
        self.min_cross_count = min_cross_count
        self.dropped = [name for name in FEATURE_COLUMNS if name in set(drop)]
        # Fitted state: plain attributes, JSON-serialisable.
        self.numeric: dict[str, tuple[float, float]] = {}  # column -> (mean, std)
        self.categories: dict[str, list[str]] = {}  # column -> categories, code = index
        self.crosses: dict[str, list[tuple[str, str]]] = {}  # "a*b" -> kept (a, b) pairs
        self._index: dict[str, dict[Any, float]] = {}
        self._means = self._stds = np.empty(0)
        self._cross_tables: dict[str, np.ndarray] = {}
        # Output columns kept from the full matrix; None when nothing is dropped (no copy).
        full = _ALL_FEATURE_NAMES
        kept = self.feature_names
        self._keep = np.array([full.index(n) for n in kept]) if len(kept) < len(full) else None

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, columns: Columns) -> FeaturePipeline:
        present = set(columns)
        for name in NUMERIC_COLUMNS:
            values = _as_float(columns[name]) if name in present else np.array([np.nan])
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
            std = float(np.nanstd(values)) if np.isfinite(values).any() else 1.0
            self.numeric[name] = (mean, std if std > 0 else 1.0)
        for name in CATEGORICAL_COLUMNS:
            values = columns[name] if name in present else []
            counts: dict[str, int] = {}
            for value in values:
                if isinstance(value, str):
                    counts[value] = counts.get(value, 0) + 1
            # Most frequent first, ties by name: a stable, readable code assignment.
            self.categories[name] = sorted(counts, key=lambda v: (-counts[v], v))
        self._build_index()
        for left, right in CROSSES:
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
        return self

    @property
    def feature_names(self) -> list[str]:
        dropped = set(self.dropped)
        return [n for n in _ALL_FEATURE_NAMES if not dropped & set(n.split("*"))]

    @property
    def categorical_features(self) -> list[int]:
        """Indices of the columns LightGBM must treat as categorical."""
        return [i for i, n in enumerate(self.feature_names) if n not in NUMERIC_COLUMNS]

    # -- transforming ---------------------------------------------------------------------------
    def transform(self, columns: Columns) -> np.ndarray:
        """Raw columns (a DataFrame, or a dict of lists/arrays) -> float64 matrix.

        A column that is absent counts as missing everywhere.
        """
        if not self.numeric:
            raise RuntimeError("FeaturePipeline is not fitted: call fit() or from_dict() first")
        rows = _row_count(columns)
        raw = np.empty((rows, len(_ALL_FEATURE_NAMES)), dtype=np.float64)
        for i, name in enumerate(NUMERIC_COLUMNS):
            raw[:, i] = _as_float(columns[name]) if name in columns else np.nan
        for i, name in enumerate(CATEGORICAL_COLUMNS, start=len(NUMERIC_COLUMNS)):
            raw[:, i] = self._codes(name, columns, rows)
        return self.transform_raw(raw)

    def transform_raw(self, raw: np.ndarray) -> np.ndarray:
        """Finish a matrix whose first columns hold a batch's raw values, in ``RAW_COLUMNS``
        order: the numbers as given and each category's code (its index in ``categories``),
        NaN where missing or unseen; the rest of its columns are written here. Scales the
        numbers in place and returns the model's matrix.

        ``transform`` ends here, and so does the predictor's native decoder
        (``streamfit.messages``), which writes the raw values straight from the JSON bytes."""
        if raw.shape[1:] != (len(_ALL_FEATURE_NAMES),):
            raise ValueError(f"expected {len(_ALL_FEATURE_NAMES)} columns, got {raw.shape[1:]}")
        numbers = raw[:, : len(NUMERIC_COLUMNS)]
        np.subtract(numbers, self._means, out=numbers)
        np.divide(numbers, self._stds, out=numbers)
        for offset, (left, right) in enumerate(CROSSES):
            table = self._cross_tables[f"{left}*{right}"]
            # Missing codes (NaN) map to the table's last row/column, which holds NaN.
            a = np.nan_to_num(raw[:, _RAW_INDEX[left]], nan=table.shape[0] - 1).astype(np.intp)
            b = np.nan_to_num(raw[:, _RAW_INDEX[right]], nan=table.shape[1] - 1).astype(np.intp)
            raw[:, len(RAW_COLUMNS) + offset] = table[a, b]
        return raw if self._keep is None else raw[:, self._keep]

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Transform a batch of JSON-like dicts."""
        return self.transform({name: [r.get(name) for r in records] for name in RAW_COLUMNS})

    def row_decoder(self, id_key: str, data_key: str) -> RowDecoder:
        """A native decoder of JSON objects ``{id_key: str, data_key: {column: value}}`` into
        this pipeline's raw columns, for :meth:`transform_raw` (see ``streamfit/_native.c``): its
        ``decode(values, raw)`` fills ``raw``'s rows and returns the ids, or None when a
        message needs the full decoder. The true label may ride along, never read."""
        return RowDecoder(
            id_key=id_key,
            data_key=data_key,
            numbers=NUMERIC_COLUMNS,
            categories=[(name, self.categories[name]) for name in CATEGORICAL_COLUMNS],
            ignored=[LABEL_COLUMN],
            width=self.raw_width,
        )

    @property
    def raw_width(self) -> int:
        """Columns of the matrix :meth:`transform_raw` takes."""
        return len(_ALL_FEATURE_NAMES)

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
        self._means = np.array([self.numeric[name][0] for name in NUMERIC_COLUMNS])
        self._stds = np.array([self.numeric[name][1] for name in NUMERIC_COLUMNS])

    def _build_cross_tables(self) -> None:
        """A dense (codes of a + 1) x (codes of b + 1) lookup; the extra row/column is 'missing'."""
        self._cross_tables = {}
        for left, right in CROSSES:
            key = f"{left}*{right}"
            table = np.full(
                (len(self.categories[left]) + 1, len(self.categories[right]) + 1), np.nan
            )
            for code, (a, b) in enumerate(self.crosses[key]):
                table[int(self._index[left][a]), int(self._index[right][b])] = code
            self._cross_tables[key] = table

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "state_version": self.STATE_VERSION,
            "min_cross_count": self.min_cross_count,
            "dropped": list(self.dropped),
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "categories": self.categories,
            "crosses": {k: [list(p) for p in v] for k, v in self.crosses.items()},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> FeaturePipeline:
        if state.get("state_version") not in (1, cls.STATE_VERSION):
            raise ValueError(f"unsupported pipeline state version {state.get('state_version')!r}")
        pipe = cls(min_cross_count=int(state["min_cross_count"]), drop=state.get("dropped", ()))
        pipe.numeric = {k: (float(m), float(s)) for k, (m, s) in state["numeric"].items()}
        pipe.categories = {k: [str(v) for v in vs] for k, vs in state["categories"].items()}
        pipe.crosses = {k: [(str(a), str(b)) for a, b in v] for k, v in state["crosses"].items()}
        missing = set(NUMERIC_COLUMNS) - set(pipe.numeric) | set(CATEGORICAL_COLUMNS) - set(
            pipe.categories
        )
        if missing:
            raise ValueError(f"pipeline state lacks columns: {sorted(missing)}")
        pipe._build_index()
        pipe._build_cross_tables()
        return pipe


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

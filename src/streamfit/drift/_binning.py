"""Reference bins shared by the count-based tests and the per-feature drift score.

Numeric features: a *missing* bin, a bin of exact zeros (capital_gain and capital_loss are ~90 %
zeros, so deciles of the raw column would all be 0), then intervals cut at the deciles of the
reference's non-zero values, with one more bin on each side for values outside their range.
Categorical features: *missing*, *unseen* (not in the reference), *other* (too rare in the
reference for a chi-squared cell to hold enough rows), then one bin per frequent category.
Codes are small integers, so a window is summarised by one ``bincount``.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd

MISSING, ZERO, UNSEEN, OTHER = 0, 1, 1, 2


class Binning:
    """Bins of one feature, fitted on the reference column; state is plain JSON types."""

    def __init__(self, kind: str = "numeric", n_quantiles: int = 10, min_share: float = 0.005):
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
        if n_quantiles < 2:
            raise ValueError(f"n_quantiles must be at least 2, got {n_quantiles}")
        if not 0 <= min_share < 1:
            raise ValueError(f"min_share must be in [0, 1), got {min_share}")
        self.kind = kind
        self.n_quantiles = n_quantiles
        self.min_share = min_share
        self.edges: list[float] = []
        self.categories: list[str] = []
        self.rare: list[str] = []

    def fit(self, reference: pd.Series) -> Self:
        if self.kind == "numeric":
            values = _as_float(reference)
            nonzero = values[~np.isnan(values) & (values != 0)]
            if nonzero.size:
                # Deciles, plus the reference's range so values never seen at training time
                # (below its minimum or above its maximum) land in bins of their own.
                cuts = np.quantile(nonzero, np.linspace(0, 1, self.n_quantiles + 1))
                cuts[0] = np.nextafter(cuts[0], -np.inf)
                self.edges = [float(e) for e in np.unique(cuts)]
        else:
            shares = _as_text(reference).value_counts(normalize=True, dropna=True)
            self.categories = sorted(str(c) for c in shares.index[shares >= self.min_share])
            self.rare = sorted(str(c) for c in shares.index[shares < self.min_share])
        return self

    @property
    def n_bins(self) -> int:
        return 3 + (len(self.edges) if self.kind == "numeric" else len(self.categories))

    @property
    def labels(self) -> list[str]:
        """Human-readable bin names, aligned with the codes."""
        if self.kind == "categorical":
            return ["(missing)", "(unseen)", "(other)", *self.categories]
        bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
        return [
            "(missing)",
            "0",
            *(f"({a}, {b}]" for a, b in zip(bounds, bounds[1:], strict=False)),
        ]

    def encode(self, values: pd.Series) -> np.ndarray:
        """Bin code of each value (int64)."""
        if self.kind == "numeric":
            x = _as_float(values)
            codes = 2 + np.searchsorted(np.asarray(self.edges, dtype=float), x, side="left")
            codes[x == 0] = ZERO
            codes[np.isnan(x)] = MISSING
            return codes.astype(np.int64)
        text = _as_text(values)
        mapping = {c: 3 + i for i, c in enumerate(self.categories)}
        mapping.update(dict.fromkeys(self.rare, OTHER))
        codes = text.map(mapping).to_numpy(dtype=float, na_value=np.nan)
        codes = np.where(np.isnan(codes), UNSEEN, codes).astype(np.int64)
        codes[text.isna().to_numpy()] = MISSING
        return codes

    def counts(self, values: pd.Series) -> np.ndarray:
        return np.bincount(self.encode(values), minlength=self.n_bins)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        binning = cls(state["kind"], state["n_quantiles"], state["min_share"])
        binning.edges = list(state["edges"])
        binning.categories = list(state["categories"])
        binning.rare = list(state["rare"])
        return binning


def _as_float(values: pd.Series | np.ndarray) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _as_text(values: pd.Series | np.ndarray) -> pd.Series:
    """Categories as stripped text with real missing values (``'?'`` counts as missing)."""
    series = pd.Series(values)
    missing = series.isna()
    text = series.astype(str).str.strip()
    text[missing | (text == "?") | (text == "")] = pd.NA
    return text.reset_index(drop=True)

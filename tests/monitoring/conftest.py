"""Shared data for the monitoring tests: small samples of UCI Adult and the three shift kinds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamfit.datasets.adult import load_adult


@pytest.fixture(scope="session")
def adult_train() -> pd.DataFrame:
    return load_adult("train")


@pytest.fixture(scope="session")
def adult_test() -> pd.DataFrame:
    return load_adult("test")


@pytest.fixture(scope="session")
def reference(adult_train: pd.DataFrame) -> pd.DataFrame:
    return adult_train.sample(8000, random_state=0).reset_index(drop=True)


def older_users(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """An ad campaign for a wider age range: rows drawn with weight growing with age."""
    weights = np.clip(frame["age"].to_numpy() - 30, 1, None)
    return frame.sample(n, weights=weights, random_state=seed).reset_index(drop=True)


def more_self_employed(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A categorical mix change: self-employed people four times as likely to come in."""
    self_employed = frame["workclass"].str.startswith("Self-emp").fillna(False).to_numpy()
    weights = np.where(self_employed, 4.0, 1.0)
    return frame.sample(n, weights=weights, random_state=seed).reset_index(drop=True)


def rescaled_hours(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A rescaled numeric feature: hours_per_week reported 10 % higher."""
    rows = frame.sample(n, random_state=seed).reset_index(drop=True)
    rows["hours_per_week"] = rows["hours_per_week"] * 1.1
    return rows


SHIFTS = {
    "older_users": (older_users, "age"),
    "more_self_employed": (more_self_employed, "workclass"),
    "rescaled_hours": (rescaled_hours, "hours_per_week"),
}

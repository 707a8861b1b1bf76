"""Fixtures for the training tests: a temporary data directory, SQLite MLflow inside it, and a
small stratified subsample of adult.data (the point of these tests is behaviour, not accuracy).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from streamfit.config import Settings
from streamfit.datasets.adult import load_adult


@pytest.fixture(scope="session")
def adult_small() -> pd.DataFrame:
    train = load_adult("train")
    return train.groupby("label", group_keys=False).sample(frac=0.08, random_state=7)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", seed=3, warm_start_top_k=2)

"""Drift-aware rounds: the thresholder drops exactly the drifting feature, end to end."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pytest

from streamfit.config import Settings
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import FEATURE_COLUMNS, load_adult
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import PIPELINE_FILE, ModelStore
from streamfit.tracking import NullTracker
from streamfit.training.round import run_round

FULL_WIDTH = FeaturePipeline(ADULT).feature_names


class RecordingTracker(NullTracker):
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def start_round(self, name: str, tags: Mapping[str, str]) -> str | None:
        self.tags = dict(tags)
        return None


@pytest.fixture(scope="module")
def shifted_observations() -> pd.DataFrame:
    """Labelled requests whose hours_per_week are reported 50 % higher; nothing else moved."""
    rows = load_adult("test").sample(600, random_state=1).reset_index(drop=True)
    rows["hours_per_week"] = rows["hours_per_week"] * 1.5
    return rows


def test_round_drops_exactly_the_drifting_feature(
    settings: Settings, adult_small: pd.DataFrame, shifted_observations: pd.DataFrame
) -> None:
    settings = settings.replace(drop_drifting_features=0.5)
    tracker = RecordingTracker()
    lines: list[str] = []
    outcome = run_round(
        settings,
        trigger="drift",
        max_evals=2,
        tracker=tracker,
        base_data=adult_small,
        new_observations=shifted_observations,
        progress=lines.append,
    )
    assert outcome.dropped_features == ["hours_per_week"]
    assert tracker.tags["dropped_features"] == "hours_per_week"
    assert any("dropped hours_per_week" in line for line in lines)

    store = ModelStore(settings.models_dir)
    directory = store.path(outcome.version)
    assert json.loads((directory / PIPELINE_FILE).read_text())["dropped"] == ["hours_per_week"]
    bundle = store.load(outcome.version)
    assert bundle.manifest["dropped_features"] == ["hours_per_week"]
    assert bundle.manifest["trigger"] == "drift"
    assert bundle.booster.num_feature() == len(FULL_WIDTH) - 1  # no crosses on hours_per_week
    bundle.validate()  # the served pipeline drops the same column the model never saw
    record: dict[str, Any] = {
        k: (None if pd.isna(v) else v) for k, v in shifted_observations.iloc[0].items()
    }
    record = {k: v for k, v in record.items() if k in FEATURE_COLUMNS}
    with_hours = bundle.predict_records([record])[0]
    without_hours = bundle.predict_records([{**record, "hours_per_week": 99.0}])[0]
    assert with_hours == without_hours  # the dropped feature cannot move a prediction


def test_without_a_threshold_nothing_is_dropped(
    settings: Settings, adult_small: pd.DataFrame, shifted_observations: pd.DataFrame
) -> None:
    outcome = run_round(
        settings,
        trigger="retrain",
        max_evals=1,
        tracker=NullTracker(),
        base_data=adult_small,
        new_observations=shifted_observations,
    )
    assert outcome.dropped_features == []
    bundle = ModelStore(settings.models_dir).load(outcome.version)
    assert bundle.booster.num_feature() == len(FULL_WIDTH)

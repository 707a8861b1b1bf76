"""Drift over a contract's columns rather than Adult's: palmerpenguins' inferred contract, a
category coded as integers, datetime columns left out, and ``streamfit drift`` on any columns."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from streamfit.config import Settings
from streamfit.contract import ColumnSpec, Contract, infer
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.monitoring import DriftDetector, alarm_budget, detector_from_settings
from streamfit.monitoring.offline import drift_command

FAST = {"classifier_null_runs": 0, "n_estimators": 20}


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    path = metadata.distribution("palmerpenguins").locate_file("palmerpenguins/data/penguins.csv")
    frame = pd.read_csv(str(path))
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def contract(penguins: pd.DataFrame) -> Contract:
    """species is the label; year, numbers 2007-2009, declared categorical."""
    return infer(penguins, "species", categorical=["year"]).contract


def test_the_detector_watches_the_contract_columns_of_their_kinds(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    detector = DriftDetector.for_contract(contract, **FAST).fit(penguins)
    assert detector.kinds == {c.name: c.kind for c in contract.columns}
    assert "species" not in detector.kinds  # the label is no feature
    assert json.loads(json.dumps(detector.fitted_tests["year"]))["name"] == "chi2"
    restored = DriftDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    assert restored.column_kinds == detector.column_kinds
    assert restored.kinds == detector.kinds


def test_a_shift_in_a_contract_column_is_caught_and_named(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    reference, rest = penguins.iloc[:200], penguins.iloc[200:]
    detector = DriftDetector.for_contract(contract, **FAST).fit(reference)
    calm = detector.score(rest)
    assert not calm.drifted, calm.table()
    biscoe = pd.concat([rest, penguins[penguins["island"] == "Biscoe"]], ignore_index=True)
    shifted = detector.score(biscoe)
    assert shifted.drifted and "island" in shifted.drifted_features


def test_datetime_columns_are_left_out() -> None:
    contract = Contract(
        task="regression",
        label="y",
        columns=(
            ColumnSpec("when", "datetime", "datetime"),
            ColumnSpec("x", "numeric", "float"),
            ColumnSpec("code", "categorical", "integer", levels=(1, 2)),
        ),
    )
    detector = DriftDetector.for_contract(contract)
    assert detector.features == ["x", "code"]
    assert detector.column_kinds == {"x": "numeric", "code": "categorical"}
    only_dates = Contract(
        task="regression", label="y", columns=(ColumnSpec("when", "datetime", "datetime"),)
    )
    with pytest.raises(ValueError, match="no numeric or categorical column"):
        DriftDetector.for_contract(only_dates)
    with pytest.raises(ValueError, match="numeric or categorical"):
        DriftDetector(["x"], column_kinds={"x": "text"})


def test_the_monitor_s_budget_counts_the_contract_s_features(contract: Contract) -> None:
    settings = Settings()
    detector = detector_from_settings(settings, contract, monitor=True)
    assert detector.features == list(contract.features)
    budget = alarm_budget(settings, contract)
    assert (budget.ert, budget.n_features) == (settings.drift_ert, 7)
    assert detector.alpha == pytest.approx(budget.window_tests)
    assert budget.output_test > alarm_budget(settings, ADULT).output_test  # 7 against 14


def test_drift_command_on_contract_named_or_own_columns(
    penguins: pd.DataFrame, contract: Contract, tmp_path: Path
) -> None:
    reference, current = tmp_path / "reference.csv", tmp_path / "current.parquet"
    penguins.iloc[:200].to_csv(reference, index=False)
    penguins[penguins["island"] == "Biscoe"].to_parquet(current)

    # Files without Adult's features: every column both have, the label too.
    code, text = drift_command(reference, current, None, None)
    assert code == 0 and "species" in text and "island" in text

    code, text = drift_command(reference, current, None, None, contract=contract)
    assert code == 0 and "overall: DRIFT" in text
    assert "island" in text and "species" not in text

    # Every shared column, the label too.
    code, text = drift_command(reference, current, None, None, own_columns=True)
    assert code == 0 and "species" in text

    code, text = drift_command(reference, current, None, None, columns=["x"])
    assert code == 2 and text.startswith("error: no usable columns") and "\n" not in text
    assert "share none of the named columns (x)" in text

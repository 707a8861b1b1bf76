"""``drift_command``: exit codes, printed verdict and the JSON event shape."""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from streamfit.messages import DRIFT_EVENT_KEYS as EVENT_KEYS
from streamfit.monitoring.offline import drift_command


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, adult_train, adult_test) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift")
    paths = {
        "reference": root / "reference.csv",
        "same": root / "same.parquet",
        "shifted": root / "shifted.csv",
    }
    adult_train.sample(4000, random_state=0).to_csv(paths["reference"], index=False)
    adult_test.sample(1000, random_state=1).to_parquet(paths["same"])
    shifted = adult_test.sample(1000, random_state=2)
    shifted["hours_per_week"] *= 1.5
    shifted.to_csv(paths["shifted"], index=False)
    return paths


def test_exit_zero_and_json_shape_when_drifted(files: dict[str, Path], tmp_path: Path) -> None:
    json_out, html_out = tmp_path / "drift.json", tmp_path / "drift.html"
    code, text = drift_command(files["reference"], files["shifted"], json_out, html_out)
    assert code == 0
    assert "overall: DRIFT" in text
    assert text.splitlines()[1].startswith("hours_per_week")
    event = json.loads(json_out.read_text())
    assert set(event) == {*EVENT_KEYS}
    assert event["drifted"] is True and event["window_end"] == 1000
    assert event["features"]["hours_per_week"]["drifted"] is True
    assert all(set(v) == {"score", "p_value", "psi", "drifted"} for v in event["features"].values())
    assert 'id="feature-hours_per_week"' in html_out.read_text()


def test_exit_zero_without_drift_on_parquet(files: dict[str, Path]) -> None:
    code, text = drift_command(files["reference"], files["same"], None, None)
    assert code == 0
    assert "overall: no drift" in text


def test_uci_files_without_header_are_read(files: dict[str, Path], tmp_path: Path) -> None:
    raw = tmp_path / "adult.test"
    source = resources.files("streamfit.datasets").joinpath("adult.test.gz")
    with source.open("rb") as handle:
        raw.write_bytes(gzip.decompress(handle.read()))
    code, text = drift_command(files["reference"], raw, None, None)
    assert code == 0, text
    assert "14 features" in text


def test_bad_input_exits_two_with_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    code, text = drift_command(tmp_path / "missing.csv", files["shifted"], None, None)
    assert code == 2 and "no such file" in text and "\n" not in text

    other = tmp_path / "other.csv"
    pd.DataFrame({"x": [1, 2], "y": [3, 4]}).to_csv(other, index=False)
    code, text = drift_command(files["reference"], other, None, None)
    assert code == 2 and "no usable columns" in text

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    code, text = drift_command(garbage, files["shifted"], None, None)
    assert code == 2 and "cannot read" in text

    empty = tmp_path / "empty.csv"
    empty.write_text("age,workclass\n")
    code, text = drift_command(files["reference"], empty, None, None)
    assert code == 2 and "no rows" in text

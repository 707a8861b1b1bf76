"""``streamfit drift`` and ``streamfit monitor`` through the real command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from streamfit.cli import build_parser, main, settings_from
from streamfit.messages import DRIFT_EVENT_KEYS as EVENT_KEYS


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, adult_train, adult_test) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    reference = adult_train.sample(3000, random_state=0)
    shifted = adult_test.sample(800, random_state=1)
    shifted["age"] = shifted["age"] + 15
    paths = {
        "reference.csv": root / "reference.csv",
        "reference.parquet": root / "reference.parquet",
        "shifted.csv": root / "shifted.csv",
        "shifted.parquet": root / "shifted.parquet",
    }
    reference.to_csv(paths["reference.csv"], index=False)
    reference.to_parquet(paths["reference.parquet"])
    shifted.to_csv(paths["shifted.csv"], index=False)
    shifted.to_parquet(paths["shifted.parquet"])
    return paths


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_drift_exits_zero_and_writes_the_event(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    out, html = tmp_path / "event.json", tmp_path / "report.html"
    code = main(
        [
            "drift",
            "--reference",
            str(files[f"reference.{kind}"]),
            "--current",
            str(files[f"shifted.{kind}"]),
            "--json",
            str(out),
            "--report",
            str(html),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0  # drift is a verdict, not a failure
    assert "overall: DRIFT" in printed and printed.splitlines()[1].startswith("age")
    event = json.loads(out.read_text())
    assert set(event) == {*EVENT_KEYS}
    assert event["drifted"] is True and event["features"]["age"]["drifted"] is True
    assert all(set(f) == {"score", "p_value", "psi", "drifted"} for f in event["features"].values())
    assert 'id="feature-age"' in html.read_text()  # the report is inline SVG now, no <img>


def test_drift_without_drift_also_exits_zero(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    reference = str(files["reference.csv"])
    assert main(["drift", "--reference", reference, "--current", reference]) == 0
    assert "overall: no drift" in capsys.readouterr().out


def test_bad_input_exits_non_zero_with_one_line(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.parquet"
    code = main(["drift", "--reference", str(files["reference.csv"]), "--current", str(missing)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip() == f"streamfit drift: error: {missing}: no such file"

    other, third = tmp_path / "other.csv", tmp_path / "third.csv"
    pd.DataFrame({"x": range(20)}).to_csv(other, index=False)
    pd.DataFrame({"y": range(20)}).to_csv(third, index=False)
    assert main(["drift", "--reference", str(other), "--current", str(third)]) == 2
    assert "no usable columns" in capsys.readouterr().err
    pd.DataFrame({"x": [1, 2]}).to_csv(third, index=False)
    assert main(["drift", "--reference", str(other), "--current", str(third)]) == 2
    assert "too few rows to compare: 20 and 2" in capsys.readouterr().err


def test_help_and_the_drift_aware_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("drift", "monitor"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
    assert "--drift-window" in capsys.readouterr().out

    args = build_parser().parse_args(
        ["trainer", "--drop-drifting-features", "0.6", "--retrain-on-drift"]
    )
    settings = settings_from(args)
    assert settings.drop_drifting_features == 0.6 and settings.retrain_on_drift is True
    plain = settings_from(build_parser().parse_args(["trainer"]))
    assert plain.drop_drifting_features == 0.0 and plain.retrain_on_drift is False
    monitor = settings_from(build_parser().parse_args(["monitor", "--drift-window", "500"]))
    assert monitor.drift_window == 500

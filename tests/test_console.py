"""What a command shows: progress bars on a terminal, plain lines elsewhere, JSON log lines with
--log-format json, and nothing from third-party libraries on a fresh `streamfit init`."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from streamfit.cli import COMMANDS, build_parser
from streamfit.config import Settings
from streamfit.ops.console import ConsoleProgress, Terminal
from streamfit.tracking import NullTracker
from streamfit.training import run_round
from tests.conftest import REPO


def _round(settings: Settings, adult_small: pd.DataFrame, progress) -> None:
    run_round(
        settings,
        trigger="manual",
        max_evals=3,
        base_data=adult_small,
        tracker=NullTracker(),
        progress=progress,
    )


@pytest.fixture
def adult_small() -> pd.DataFrame:
    from streamfit.datasets.adult import load_adult

    train = load_adult("train")
    return train.groupby("label", group_keys=False).sample(frac=0.05, random_state=3)


def test_off_a_terminal_a_round_writes_plain_lines(
    tmp_path: Path, adult_small: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = Terminal.detect("text", io.StringIO())  # not a TTY
    assert terminal.console is None
    with terminal.progress() as progress:
        _round(Settings(data_dir=tmp_path), adult_small, progress)
    lines = capsys.readouterr().out.splitlines()
    trials = [line for line in lines if line.startswith("trial ")]
    assert [t.split(":")[0].split()[1] for t in trials] == ["1/3", "2/3", "3/3"]
    assert all("(best " in t for t in trials)  # the best so far, on every trial
    assert any(line.startswith("refit: ") for line in lines)
    assert not any("\x1b[" in line for line in lines)  # no escape codes in a CI log


def test_on_a_terminal_a_round_draws_a_bar(tmp_path: Path, adult_small: pd.DataFrame) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140, color_system="standard")
    assert Terminal.detect("text", screen).console is None  # a buffer is no terminal...
    with ConsoleProgress(console) as progress:  # ...but a forced console draws as one
        _round(Settings(data_dir=tmp_path), adult_small, progress)
    drawn = screen.getvalue()
    assert "\x1b[" in drawn  # ANSI: cursor moves and colours
    assert "━" in drawn and "trials" in drawn
    assert "3/3" in drawn and "(best 0." in drawn  # k/n and the best score so far
    assert "refit: " in drawn  # the notes print above the bar


def test_a_bar_starts_again_for_the_next_round() -> None:
    console = Console(file=io.StringIO(), force_terminal=True)
    with ConsoleProgress(console) as progress:
        progress.update("trials", 3, 3, "trial 3/3")
        progress.update("trials", 1, 5, "trial 1/5")
        (task,) = progress.bars.tasks
        assert (task.completed, task.total, task.fields["status"]) == (1, 5, "trial 1/5")
        progress.update("sent", 4, 10)  # a count without a line keeps its own bar
        assert [t.description for t in progress.bars.tasks] == ["trials", "sent"]


def test_every_command_takes_the_log_options() -> None:
    parser = build_parser()
    required = {
        "promote": ["3"],
        "shadow": ["3"],
        "replay": ["--version", "3"],
        "contract": ["infer", "data.csv", "--label", "y"],
    }
    for command in set(COMMANDS) - {"drift"}:  # drift: offline, options hidden
        options = ["--log-format", "json", "--log-level", "debug"]
        args = parser.parse_args([command, *required.get(command, []), *options])
        assert (args.log_format, args.log_level) == ("json", "DEBUG"), command
    assert parser.parse_args(["predictor"]).log_format == "text"
    with pytest.raises(SystemExit):
        parser.parse_args(["predictor", "--log-format", "xml"])


def _init(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("STREAMFIT_", "MLFLOW_"))
    }
    environment["PYTHONPATH"] = str(REPO / "src")
    return subprocess.run(
        [sys.executable, "-m", "streamfit.cli", "init", "--data-dir", str(tmp_path / "fresh")]
        + ["--max-evals", "1", *flags],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


NOISE = re.compile(
    r"mlflow|alembic|treelite|tl2cgen|registered model|created version|warning", re.I
)


def test_init_from_a_fresh_data_dir_says_only_what_streamfit_says(tmp_path: Path) -> None:
    done = _init(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert not [line for line in lines if NOISE.search(line)], lines
    loggers = [m.group(1) for line in lines if (m := re.match(r"\d\d:\d\d:\d\d \w+ +(\S+):", line))]
    assert all(name.startswith("streamfit") for name in loggers), lines
    printed = done.stdout.splitlines()  # the progress lines; the log lines are on stderr
    assert printed[0] == "training the initial model (1 trials, hyperopt)"
    assert printed[-1].startswith("initial model v1, on the test rows: log loss 0.")


def test_init_with_json_logs_writes_one_json_object_per_line(tmp_path: Path) -> None:
    done = _init(tmp_path, "--log-format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # everything is a record on stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert {"time", "level", "logger", "thread", "message"} <= set(records[0])
    assert all(r["logger"].startswith("streamfit") for r in records), records
    messages = [r["message"] for r in records]
    assert messages[0] == "training the initial model (1 trials, hyperopt)"
    assert any(m.startswith("trial 1/1") for m in messages)
    assert not [m for m in messages if NOISE.search(m)]
    # an error the user can fix is a record too, not a bare line
    refused = _init(tmp_path, "--log-format", "json", "--config", str(tmp_path / "none.toml"))
    assert refused.returncode == 2
    (error,) = [json.loads(line) for line in refused.stderr.splitlines()]
    assert error["level"] == "ERROR" and error["message"].startswith("streamfit init: error:")


@pytest.mark.parametrize(
    "name", ["streamfit.ops.progress", "streamfit.ops.console", "streamfit.ops.status"]
)
def test_doctests(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0

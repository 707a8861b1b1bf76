"""The README, as a newcomer reads it: short, and every command in it one that works.

Each ``streamfit`` line of its code blocks is parsed by the real command line (the services'
behaviour is tested where they are: test_demo, tests/kafka, tests/contract); ``contract infer``
runs for real on a small table; ``make`` targets, ``scripts/`` and the docs pages it links exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from streamfit.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _substitute(word: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], word)


def _bash_lines() -> list[list[str]]:
    """Every command of the README's bash blocks, variables substituted, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        variables: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z]+=.*", words[0]):
                name, value = words.pop(0).split("=", 1)
                variables[name] = value
            words = [_substitute(w, variables) for w in words]
            if words:
                commands.append(words)
    return commands


def _streamfit_commands() -> list[list[str]]:
    return [w[1:] for w in _bash_lines() if Path(w[0]).name == "streamfit"]


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) <= 200


def test_the_readme_shows_the_two_commands_and_the_three_for_your_own_data() -> None:
    lines = [" ".join(w) for w in _bash_lines()]
    assert "make demo" in lines and "make test" in lines
    own = [" ".join(args) for args in _streamfit_commands()]
    assert "contract infer data.csv --label y" in own
    assert "init --data data.csv --label y" in own
    assert any(args.startswith("predictor --bus kafka://") for args in own)


@pytest.mark.parametrize(
    "args", [pytest.param(args, id=" ".join(args[:2])) for args in _streamfit_commands()]
)
def test_every_streamfit_command_in_the_readme_is_accepted(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"streamfit {' '.join(args)}: the command line refuses it (exit {exc.code})")


def test_contract_infer_as_the_readme_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = 200
    pd.DataFrame(
        {
            "x": [float(i % 17) for i in range(rows)],
            "colour": [("red", "green", "blue")[i % 3] for i in range(rows)],
            "y": [i % 2 for i in range(rows)],
        }
    ).to_csv("data.csv", index=False)
    infer = next(a for a in _streamfit_commands() if a[:2] == ["contract", "infer"])
    assert main(infer) == 0
    assert (tmp_path / "contract.json").is_file()


def test_make_targets_scripts_and_linked_pages_exist() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    for words in _bash_lines():
        if words[0] == "make":
            assert words[1] in targets, f"no make target {words[1]!r}"
        if words[0].startswith("scripts/"):
            assert (ROOT / words[0]).is_file(), f"{words[0]} does not exist"
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in link:
            assert (ROOT / link).is_file(), f"the README links to {link}, which does not exist"

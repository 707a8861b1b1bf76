"""The alert rules and the dashboard's queries through promtool (Debian's prometheus package):
the rules are valid, each has firing and quiet unit tests (alerts_test.yml) and they pass, and
every dashboard query parses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.deploy.conftest import ALERTS, ALERTS_TEST, DASHBOARD, alert_rules, write


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules(promtool: str) -> None:
    checked = run(promtool, "check", "rules", ALERTS.name, cwd=ALERTS.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    tested = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        outcomes = [bool(c["exp_alerts"]) for c in cases if c["alertname"] == rule["alert"]]
        assert True in outcomes and False in outcomes, f"{rule['alert']}: {outcomes}"


def test_a_broken_rule_fails_its_unit_test(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: with the drift alarm's `for` dropped, it fires too early."""
    rules = yaml.safe_load(ALERTS.read_text())
    for rule in rules["groups"][0]["rules"]:
        if rule["alert"] == "StreamfitDriftAlarm":
            del rule["for"]
    write(tmp_path / "alerts.yml", yaml.safe_dump(rules))
    write(tmp_path / "alerts_test.yml", ALERTS_TEST.read_text())
    tested = run(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "StreamfitDriftAlarm" in tested.stdout + tested.stderr


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    """promtool has no query linter: each panel query becomes a recording rule it checks."""
    dashboard = json.loads(DASHBOARD.read_text())
    rules = [
        {"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": target["expr"]}
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    write(tmp_path / "queries.yml", yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    checked = run(promtool, "check", "rules", "queries.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout

"""Every metric the alert rules and the Grafana dashboard query is one the services export:
a renamed metric breaks this test, not a dashboard panel that silently shows "No data"."""

from __future__ import annotations

import json

import pytest

from tests.deploy.conftest import DASHBOARD, alert_rules, exported_names, names_in


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_exported_names_are_read_from_streamfit_metrics() -> None:
    names = exported_names()
    # one of each type, with the suffix PromQL sees
    assert "streamfit_predictions_total" in names  # counter
    assert "streamfit_prediction_latency_seconds_bucket" in names  # the batch histogram
    assert "streamfit_predictor_batch_seconds_count" in names  # histogram
    assert "streamfit_monitor_feature_drift_score" in names  # labelled gauge, no child yet
    assert "streamfit_predictions" not in names and "streamfit_predictor_ready" in names


def test_names_in_leaves_label_values_and_functions_out() -> None:
    expression = (
        'sum by (le) (rate(streamfit_prediction_latency_seconds_bucket{job="streamfit_x"}[5m]))'
        " / ignoring(source) streamfit_monitor_accuracy"
    )
    assert names_in(expression) == {
        "streamfit_prediction_latency_seconds_bucket",
        "streamfit_monitor_accuracy",
    }


@pytest.mark.parametrize(("title", "expression"), dashboard_queries())
def test_every_dashboard_query_reads_exported_metrics(title: str, expression: str) -> None:
    used = names_in(expression)
    assert used, f"panel {title!r} queries no streamfit metric: {expression}"
    assert used <= exported_names(), f"panel {title!r}: {used - exported_names()} not exported"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_reads_exported_metrics(rule: dict) -> None:
    used = names_in(rule["expr"])
    for text in rule.get("annotations", {}).values():  # templates may query too
        used |= names_in(text)
    assert used and used <= exported_names(), used - exported_names()


def test_the_dashboard_has_the_panels_of_the_issue() -> None:
    titles = {title for title, _ in dashboard_queries()}
    assert {
        "Throughput",
        "End-to-end latency p50 / p99",
        "Consumer lag",
        "Model versions and swaps",
        "Dead letters",
        "Drift score",
        "Drift per feature",
        "Accuracy: realised vs estimated",
        "Training rounds",
    } <= titles
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {"prometheus"}  # the datasource provisioned in deploy/grafana/provisioning

"""`streamfit experiments`: the live comparisons from the store and the challengers the gate
refused from the trial store, as a table or JSON."""

from __future__ import annotations

import json

import pytest

from streamfit import messages
from streamfit.cli import main
from streamfit.config import Settings
from streamfit.stores import ComparisonStore, ObservationBatch, ObservationStore
from streamfit.training.trials import TrialStore


def test_experiments_lists_running_and_decided_comparisons(tmp_path, capsys) -> None:
    settings = Settings(data_dir=tmp_path)
    store = ComparisonStore(settings.store_url)
    done = store.start(settings.registered_model, champion=1, challenger=2, policy="shadow", now=5)
    store.finish(
        done.id, "reject", pairs=120, estimate=-0.3, lower=-0.5, upper=-0.1, reason="x", now=65
    )
    store.start(settings.registered_model, champion=1, challenger=3, policy="shadow")
    store.start("another-model", champion=7, challenger=8, policy="shadow")
    store.close()
    # Before any label: the running comparison's requests, scored by both (v1 answered, v3 in
    # shadow), and one answered by v1 alone.
    observations = ObservationStore(settings.store_url)
    ids = ["a", "b", "c", "d"]
    observations.record(
        ObservationBatch(
            requests=[(i, messages.request(i, {"age": 30})) for i in ids],
            predictions=[("a", 0.9, 1), ("b", 0.2, 1), ("c", 0.6, 1), ("d", 0.5, 1)],
            shadows=[("a", 3, 0.99), ("b", 3, 0.01), ("c", 3, 0.5)],
        )
    )
    observations.close()

    assert main(["experiments", "--data-dir", str(tmp_path), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["challenger"], c["decision"], c["pairs"]) for c in listed] == [
        (2, "reject", 120),
        (3, "running", 0),
    ]
    assert listed[0]["duration_s"] == 60 and listed[0]["upper"] == -0.1
    # label-free, on the 3 requests both scored: mean of max(p, 1 - p); the decided one has none
    assert listed[1]["scored"] == 3
    assert listed[1]["champion_estimated_accuracy"] == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert listed[1]["challenger_estimated_accuracy"] == pytest.approx((0.99 + 0.99 + 0.5) / 3)
    assert listed[0]["scored"] == 0 and listed[0]["challenger_estimated_accuracy"] is None

    assert main(["experiments", "--data-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "id", "challenger", "champion", "decision", "pairs", "estimate", "interval", "took",
        "est.", "accuracy",
    ]  # fmt: skip
    assert table[1].split()[:5] == ["1", "v2", "v1", "reject", "120"]
    assert "running" in table[2] and table[2].endswith("0.767 vs 0.827 on 3")


def test_experiments_lists_the_challengers_the_gate_refused_with_the_reason(
    tmp_path, capsys
) -> None:
    settings = Settings(data_dir=tmp_path)
    trials = TrialStore(settings.trials_url)
    breaks = "refused: its contract breaks v1's producers: column 'colour' becomes required (new)"
    for version, promoted, reason in (
        (1, True, "first model"),
        (2, False, breaks),
        (3, False, "shadowed against v1 on live traffic; gate promoted: holdout ..."),
    ):
        round_id = trials.begin_round(
            trigger="retrain", optimizer="hyperopt", data_rows=9, data_hash="d", space_hash="s"
        )
        trials.finish_round(
            round_id,
            "done",
            model_version=version,
            promoted=promoted,
            gate_reason=reason,
            compared_with=None if version == 1 else 1,
        )
    trials.close()
    comparisons = ComparisonStore(settings.store_url)
    comparisons.start(settings.registered_model, champion=1, challenger=3, policy="shadow")
    comparisons.close()

    assert main(["experiments", "--data-dir", str(tmp_path), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["stage"], e["challenger"], e["decision"]) for e in listed] == [
        ("gate", 2, "refused"),
        ("live", 3, "running"),
    ]
    refused = listed[0]
    assert (refused["round"], refused["champion"], refused["trigger"]) == (2, 1, "retrain")
    assert refused["reason"] == breaks

    assert main(["experiments", "--data-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:4] == ["1", "v3", "v1", "running"]
    at = table.index("refused by the gate:")
    assert table[at + 1].split() == ["round", "challenger", "champion", "reason"]
    assert table[at + 2].split()[:3] == ["2", "v2", "v1"]
    assert table[at + 2].endswith(
        "its contract breaks v1's producers: column 'colour' becomes required (new)"
    )
    assert len(table) == at + 3


def test_experiments_with_none_yet(tmp_path, capsys) -> None:
    assert main(["experiments", "--data-dir", str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["experiments", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == (
        "no challenger of 'streamfit-model' compared on live traffic or refused by the gate yet\n"
    )


def test_shadow_without_a_champion_is_one_clear_error(tmp_path, capsys) -> None:
    assert main(["shadow", "2", "--data-dir", str(tmp_path)]) == 2
    assert "no champion" in capsys.readouterr().err

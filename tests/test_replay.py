"""``streamfit replay``: a slice of recorded labelled traffic (SQLite store) re-scored with a
registered version and with the champion (real MLflow registry), read-only."""

from __future__ import annotations

import json
import shutil

import pytest

from streamfit import messages
from streamfit.cli import main
from streamfit.datasets.adult import LABEL_COLUMN, label_to_int
from streamfit.datasets.adult import requests as adult_requests
from streamfit.models.bundle import BundleError
from streamfit.monitoring.replay import ReplayError, replay, replay_command
from streamfit.stores import ObservationBatch, ObservationStore
from tests.serving.conftest import Registered, mlflow_settings
from tests.test_live import _bundle


@pytest.fixture
def recorded(tmp_path, mlflow_server):
    """600 labelled requests recorded at t = 1000..1599 (answered by the champion v1), a
    better v2 and a worse (shuffled labels) v3 registered."""
    settings = mlflow_settings(tmp_path, mlflow_server)
    models = Registered(settings, mlflow_server)
    champion = models.save(_bundle(5, 1000))
    models.promote(champion)
    better = models.save(_bundle(80, 10000, seed=2))
    worse = models.save(_bundle(60, 8000, shuffled=True))
    store = ObservationStore(settings.store_url)
    for i, row in enumerate(adult_requests(600, seed=4)):
        rid = f"r{i}"
        label = label_to_int(row.pop(LABEL_COLUMN))
        batch = ObservationBatch(
            requests=[(rid, messages.request(rid, row))],
            predictions=[(rid, 0.5, champion)],
            labels=[(rid, label)],
        )
        store.record(batch, now=1000.0 + i)
    store.close()
    return settings, models, champion, better, worse


def test_replay_ranks_versions_against_the_champion_on_the_same_rows(recorded):
    settings, models, champion, better, worse = recorded
    good = replay(settings, better)
    bad = replay(settings, worse)
    assert good.rows == bad.rows == 600 and good.champion == champion
    assert good.metrics[better]["log_loss"] < good.metrics[champion]["log_loss"]
    assert bad.metrics[worse]["log_loss"] > bad.metrics[champion]["log_loss"]
    assert good.metrics[better]["auc"] > 0.8 > bad.metrics[worse]["auc"]
    # The champion's figures are the same rows re-scored, whichever version is replayed.
    assert good.metrics[champion] == pytest.approx(bad.metrics[champion], nan_ok=True)
    # Read-only: no alias moved.
    assert models.champion() == champion and models.registry.shadow() is None


def test_replay_slices_by_time_and_by_count(recorded):
    settings, _, champion, better, _ = recorded
    assert replay(settings, better, since=1100, until=1300).rows == 200
    assert replay(settings, better, since=1500).rows == 100
    assert replay(settings, better, last=50).rows == 50
    assert replay(settings, better, until=1200, last=10).rows == 10
    found = json.loads(replay_command(settings, better, since="1970-01-01T00:25:00", output="json"))
    assert found["rows"] == 100 and found["version"] == better  # 1500 s = 00:25 UTC
    assert set(found["metrics"]) == {f"v{better}", f"v{champion}"}
    assert set(found["metrics"][f"v{better}"]) == {"n", "log_loss", "auc", "accuracy"}
    table = replay_command(settings, better, last=100)
    assert f"v{champion} (champion)" in table and "log_loss" in table
    with pytest.raises(ReplayError, match="no labelled observation"):
        replay(settings, better, since=5000)


def test_replay_refuses_what_it_cannot_trust(recorded):
    settings, models, _, better, _ = recorded
    with pytest.raises(BundleError, match="no version 99"):
        replay(settings, 99)
    models.artifact_file(better).write_text("tampered")  # on the tracking server
    shutil.rmtree(settings.model_cache, ignore_errors=True)  # no verified copy to fall back on
    with pytest.raises(BundleError, match="hashes to"):
        replay(settings, better)


def test_replay_cli_says_what_is_wrong(tmp_path, capsys):
    code = main(["replay", "--version", "1", "--since", "yesterday", "--data-dir", str(tmp_path)])
    assert code != 0
    assert "not a time" in capsys.readouterr().err

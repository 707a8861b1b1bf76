"""Your data, not Adult's: `streamfit demo --data` on a multiclass and a regression table, in
process, through the real command line and MLflow; a retrained model whose contract would break
today's producers is refused by the gate, listed with the reason by `streamfit experiments`, and
promoted only when asked."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from streamfit.cli import main
from streamfit.config import Settings
from streamfit.contract import Contract
from streamfit.models.bundle import ModelStore
from streamfit.models.registry import ModelRegistry
from tests.data_sets import csv_of, penguins, sklearn_table


def _demo(root: Path, *args: str) -> dict:
    summary = root / "summary.json"
    code = main(
        [
            "demo",
            *args,
            "--data-dir",
            str(root / "data"),
            "--init-max-evals",
            "2",
            "--max-evals",
            "2",
            "--count",
            "200",
            "--rate",
            "200",
            "--retrain-every",
            "60",
            "--summary-json",
            str(summary),
            "--metrics-port",
            "0",
        ]
    )
    assert code == 0
    return json.loads(summary.read_text())


@pytest.fixture(scope="module")
def penguin_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("penguins")
    return root, _demo(root, "--data", str(penguins()), "--label", "species")


def test_a_multiclass_table_runs_end_to_end(penguin_demo) -> None:
    root, summary = penguin_demo
    assert summary["sent"] == summary["answered"] == 200 and summary["lost"] == 0
    assert summary["accuracy"] > 0.9  # the app grades each answer's class against the truth
    assert summary["retrains"] >= 1 and summary["recorded"] == 200
    monitor = summary["monitor"]
    assert monitor["checks"] >= 1
    assert monitor["realised_accuracy"] > 0.9 and 0 < monitor["estimated_accuracy"] <= 1
    contract = Contract.load(root / "data" / "contract.json")
    assert (contract.task, contract.classes) == ("multiclass", ("Adelie", "Chinstrap", "Gentoo"))


def test_the_registered_model_carries_the_contract_and_a_signature_from_it(penguin_demo) -> None:
    root, _ = penguin_demo
    settings = Settings(data_dir=root / "data")
    entry = ModelRegistry.from_settings(settings).champion()
    assert entry is not None
    mlflow.set_tracking_uri(settings.mlflow_uri)
    model = mlflow.pyfunc.load_model(entry.model_uri)
    inputs = {spec.name: spec for spec in model.metadata.get_input_schema().inputs}
    assert inputs["bill_length_mm"].type.name == "double" and not inputs["sex"].required
    assert inputs["island"].type.name == "string" and inputs["island"].required
    rows = pd.read_csv(penguins()).dropna().head(5)
    probabilities = model.predict(rows.drop(columns=["species"]).astype({"year": float}))
    assert probabilities.shape == (5, 3)
    store = ModelStore(settings.models_dir)
    bundle = store.load(store.champion())
    assert bundle.contract == Contract.load(root / "data" / "contract.json")


def test_a_regression_table_answers_values(tmp_path: Path) -> None:
    data = csv_of(sklearn_table("diabetes"), tmp_path, "diabetes")
    summary = _demo(tmp_path, "--data", str(data), "--label", "target")
    assert summary["answered"] == 200 and summary["lost"] == 0
    assert summary["accuracy"] is None and 0 < summary["mae"] < 80  # target spans 25..346
    assert summary["retrains"] >= 1
    monitor = summary["monitor"]
    assert monitor["checks"] >= 1
    # The label-free estimate (direct loss estimation) is of the realised error's size.
    assert 0 < monitor["realised_rmse"] < 100 and 0 < monitor["estimated_rmse"] < 100


def test_a_retrain_that_adds_a_required_column_is_refused_and_promoted_only_when_asked(
    penguin_demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new required column (and an optional one made required) would break today's
    producers: the gate refuses the retrained model, the trainer says why, `streamfit
    experiments` lists it with that reason, and only `promote --allow-breaking` makes it the
    champion."""
    root, _ = penguin_demo
    data_dir = root / "data"
    data = tmp_path / "penguins.csv"
    pd.read_csv(penguins()).assign(colony=lambda f: f["island"]).to_csv(data, index=False)
    contract = json.loads((data_dir / "contract.json").read_text())
    for column in contract["columns"]:
        if column["name"] == "sex":
            column["required"] = True
    island = next(c for c in contract["columns"] if c["name"] == "island")
    contract["columns"].append({**island, "name": "colony", "required": True})
    edited = tmp_path / "contract.json"
    edited.write_text(json.dumps(contract))
    before = ModelRegistry.from_settings(Settings(data_dir=data_dir)).champion().version
    args = ["--data-dir", str(data_dir), "--data", str(data), "--contract", str(edited)]
    assert main(["init", "--force", *args, "--max-evals", "2"]) == 0
    said = capsys.readouterr().out
    breaks = (
        f"its contract breaks v{before}'s producers: column 'sex' becomes required (optional "
        "today); column 'colony' becomes required (new)"
    )
    assert f"refused: {breaks}" in said
    registry = ModelRegistry.from_settings(Settings(data_dir=data_dir))
    assert registry.champion().version == before
    latest = max(int(v.version) for v in registry.client.search_model_versions())

    assert main(["experiments", "--data-dir", str(data_dir), "--format", "json"]) == 0
    refused = [e for e in json.loads(capsys.readouterr().out) if e["stage"] == "gate"]
    # the demo's retrains may have been refused too (a worse holdout loss): this one is last
    assert (refused[-1]["challenger"], refused[-1]["champion"]) == (latest, before)
    assert refused[-1]["reason"] == f"refused: {breaks}"
    assert main(["experiments", "--data-dir", str(data_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "refused by the gate:" in table
    assert table[-1].split()[1:3] == [f"v{latest}", f"v{before}"] and table[-1].endswith(breaks)

    assert main(["promote", str(latest), "--data-dir", str(data_dir)]) == 2
    assert "--allow-breaking" in capsys.readouterr().err
    assert main(["promote", str(latest), "--allow-breaking", "--data-dir", str(data_dir)]) == 0
    assert registry.champion().version == latest

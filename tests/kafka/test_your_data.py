"""A user's own table, end to end over the real broker, PostgreSQL and the MLflow server:
``streamfit init --data`` on a Parquet file and on a database table, then predictor, recorder
and trainer as separate processes on that data (none of them is told the data: the data
directory remembers it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from streamfit.bus import get_bus
from streamfit.config import Settings, Topics
from tests.conftest import REPO
from tests.harness import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _table(rows: int = 500, seed: int = 3) -> pd.DataFrame:
    """A regression table: the value depends on two numbers and a category, with noise."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 10, rows)
    weight = rng.normal(50, 10, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    price = 3 * size + 0.5 * weight + pd.Series(colour).map({"red": 5, "green": 0, "blue": -5})
    return pd.DataFrame(
        {"size": size, "weight": weight, "colour": colour, "price": price + rng.normal(0, 1, rows)}
    )


def _source(kind: str, tmp_path, postgres_schema_url: str) -> list[str]:
    table = _table()
    if kind == "parquet":
        path = tmp_path / "prices.parquet"
        table.to_parquet(path)
        return ["--data", str(path)]
    engine = sa.create_engine(postgres_schema_url)
    table.to_sql("prices", engine, index=False)
    engine.dispose()
    return ["--data", postgres_schema_url, "--table", "prices"]


@pytest.mark.parametrize("kind", ["parquet", "sql"])
def test_your_table_is_served_and_retrained_over_kafka(
    kind, tmp_path, kafka_bootstrap, mlflow_server, postgres_schema_url
):
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"{name}-{suffix}" for name in vars(Topics())})
    config = tmp_path / "streamfit.toml"
    topic_lines = "\n".join(f'{k} = "{v}"' for k, v in vars(topics).items())
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nbus = "kafka://{kafka_bootstrap}"\n'
        f'group = "predictors-{suffix}"\ntrainer_group = "trainers-{suffix}"\n'
        f'recorder_group = "recorders-{suffix}"\ntracking_uri = "{mlflow_server}"\n'
        f'experiment = "yours-{suffix}"\nregistered_model = "yours-{suffix}"\n'
        f'store = "{postgres_schema_url}"\n[topics]\n{topic_lines}\n'
    )
    settings = Settings.load(config_file=config, environ={})
    get_bus(settings.bus).ensure_topics({t: 1 for t in vars(topics).values()})

    def streamfit(*args: str, **kwargs) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "streamfit.cli", *args, "--config", str(config)]
        return subprocess.run(command, cwd=REPO, **kwargs)

    init = streamfit(
        "init",
        *_source(kind, tmp_path, postgres_schema_url),
        "--label",
        "price",
        "--max-evals",
        "2",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert "regression" in init.stdout and "contract written to" in init.stdout

    logs, processes = {}, []
    for service, *args in (
        ("predictor",),
        ("recorder", "--retrain-every", "100"),
        ("trainer", "--max-evals", "2"),
    ):
        logs[service] = tmp_path / f"{service}.log"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "streamfit.cli", service, "--config", str(config), *args],
                stdout=logs[service].open("wb"),
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        )
    try:
        for service, text in (
            ("predictor", "predictor consuming"),
            ("recorder", "recorder consuming"),
            ("trainer", "trainer waiting"),
        ):
            wait_until(
                lambda s=service, t=text: t in logs[s].read_text(),
                120,
                f"{service} to start",
                every=0.5,
            )
        # 300 requests over the 100 test rows (each thrice), labels riding along.
        summary_file = tmp_path / "app.json"
        app = streamfit(
            "app",
            "--count",
            "300",
            "--rate",
            "100",
            "--summary-json",
            str(summary_file),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert app.returncode == 0, app.stdout + app.stderr
        summary = json.loads(summary_file.read_text())
        assert summary["answered"] == 300 and summary["lost"] == 0
        assert summary["mae"] is not None and summary["accuracy"] is None
        wait_until(
            lambda: re.search(r"round done: v\d+ promoted", logs["trainer"].read_text()),
            300,
            "a retrained model promoted",
            every=0.5,
        )
        # Predictions in the regression format, read from the start by a group of its own.
        reader = f"reader-{suffix}"
        with get_bus(settings.bus).consumer([topics.predictions], group=reader) as consumer:
            answers = [orjson.loads(m.value) for m in consumer.poll(50, timeout=10)]
        assert answers
        for answer in answers:
            assert set(answer) == {"request_id", "value", "model_version"}
            assert isinstance(answer["value"], float)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    show = streamfit("contract", "show", "--format", "jsonschema", capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    schema = json.loads(show.stdout)
    assert schema["properties"]["size"]["type"] == "number"
    assert schema["additionalProperties"] is False

"""``benchmarks/training.py --data`` / ``--suite your-data``: the initial model's test metric on
any data set beside LightGBM with default parameters and beside FLAML given the same wall-clock
budget, on the same split (issue 22).

Per data set, all on ``streamfit.datasets.split``'s rows (a fixed 20 % test set, stratified for
classification):

- streamfit: ``run_round(trigger="initial", max_evals=init_max_evals)``, the initial model with
  the default budget and settings (one LightGBM thread; a fixed share of the training rows held
  out for the gate, as in production); its test metric and wall time.
- LightGBM defaults: ``LGBMClassifier``/``LGBMRegressor()`` on all the training rows (categories
  as pandas categories), one thread.
- FLAML: ``AutoML.fit`` on all the training rows, ``time_budget`` = streamfit's wall time,
  metric log loss or RMSE, one job.

The metric is log loss (binary, multiclass) or RMSE (regression) on the test rows. Targets:
streamfit never worse than LightGBM's defaults, within 1 % of FLAML. Date columns, if a data set
has any, are left out of the two references (streamfit expands them into parts).

``--repeats N``: the three measured N times, each on the table's rows in another seeded order,
so the fixed split holds out other test rows; the targets then hold on the medians of the
ratios. On a small table one test set decides little: breast_cancer tests on 113 rows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_data import BenchData, flights_files, penguins_set, sklearn_csv

from streamfit.config import Settings
from streamfit.datasets import Dataset, load_dataset
from streamfit.tracking import NullTracker
from streamfit.training.round import run_round

SEED = 42
FLAML_TOLERANCE = 0.01  # "within 1 % of FLAML's test metric"


def suite(directory: Path, quick: bool) -> list[BenchData]:
    """penguins (multiclass), breast_cancer (binary), diabetes (regression), and flights
    (regression on ``arr_delay``, a seeded sample: 50,000 rows, 10,000 with ``--quick``)."""
    rows = 10_000 if quick else 50_000
    regression, _ = flights_files(directory / "flights", rows)
    return [
        penguins_set(),
        BenchData(
            "breast_cancer", str(sklearn_csv("breast_cancer", directory)), "target", "binary"
        ),
        BenchData(
            "diabetes", str(sklearn_csv("diabetes", directory)), "target", "regression", (), ""
        ),
        BenchData(
            "flights",
            str(regression),
            "arr_delay",
            "regression",
            ("time_hour",),
            f"{rows:,}-row seeded sample, --ignore time_hour",
        ),
    ]


def _settings(data: BenchData, directory: Path) -> Settings:
    return Settings(
        data_dir=directory,
        data=data.data,
        label=data.label,
        task=data.task,
        ignore=data.ignore,
    )


def frames(dataset: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) features for the references: numbers as floats, each categorical column
    as pandas categories (the training rows' levels), dates left out."""
    train, test = {}, {}
    for spec in dataset.contract.columns:
        if spec.kind == "numeric":
            train[spec.name] = dataset.train[spec.name].astype("float64")
            test[spec.name] = dataset.test[spec.name].astype("float64")
        elif spec.kind == "categorical":
            levels = sorted(dataset.train[spec.name].dropna().astype(str).unique())
            for out, rows in ((train, dataset.train), (test, dataset.test)):
                values = rows[spec.name].astype("string")
                out[spec.name] = pd.Categorical(values, categories=levels)
    return pd.DataFrame(train), pd.DataFrame(test)


def metric(task: str, targets: np.ndarray, outputs: np.ndarray, classes: int) -> float:
    """Log loss (binary, multiclass: ``outputs`` are class probabilities) or RMSE."""
    from sklearn.metrics import log_loss, mean_squared_error

    if task == "regression":
        return float(np.sqrt(mean_squared_error(targets, outputs)))
    return float(log_loss(targets, outputs, labels=list(range(classes))))


def lightgbm_defaults(task: str, x: pd.DataFrame, y: np.ndarray, test: pd.DataFrame) -> Any:
    """LightGBM with its default parameters (one thread): the test outputs."""
    import lightgbm as lgb

    if task == "regression":
        return lgb.LGBMRegressor(n_jobs=1, verbose=-1, random_state=SEED).fit(x, y).predict(test)
    model = lgb.LGBMClassifier(n_jobs=1, verbose=-1, random_state=SEED).fit(x, y)
    return model.predict_proba(test)


def flaml_automl(
    task: str, x: pd.DataFrame, y: np.ndarray, test: pd.DataFrame, budget_s: float
) -> tuple[Any, dict[str, Any]]:
    """FLAML's AutoML given ``budget_s`` seconds (one job): the test outputs and its choice."""
    from flaml import AutoML

    automl = AutoML()
    automl.fit(
        x,
        y,
        task="regression" if task == "regression" else "classification",
        metric="rmse" if task == "regression" else "log_loss",
        time_budget=budget_s,
        n_jobs=1,
        seed=SEED,
        verbose=0,
    )
    outputs = automl.predict(test) if task == "regression" else automl.predict_proba(test)
    return outputs, {"best_estimator": automl.best_estimator, "flaml_trials": _trials(automl)}


def _trials(automl: Any) -> int | None:
    history = getattr(automl, "config_history", None)
    return len(history) if history is not None else None


def measure(data: BenchData, work: Path, max_evals: int | None) -> dict[str, Any]:
    """streamfit's initial model, LightGBM's defaults and FLAML on one data set."""
    settings = _settings(data, work / data.name)
    evals = max_evals or settings.init_max_evals
    dataset = load_dataset(settings)
    task = dataset.contract.task
    classes = len(dataset.contract.classes)
    start = time.perf_counter()
    outcome = run_round(settings, trigger="initial", max_evals=evals, tracker=NullTracker())
    streamfit_s = time.perf_counter() - start
    name = "rmse" if task == "regression" else "log_loss"
    x, test = frames(dataset)
    y, targets = dataset.train["label"].to_numpy(), dataset.test["label"].to_numpy()
    if task != "regression":
        y, targets = y.astype(int), targets.astype(int)
    start = time.perf_counter()
    default = metric(task, targets, lightgbm_defaults(task, x, y, test), classes)
    default_s = time.perf_counter() - start
    outputs, flaml_info = flaml_automl(task, x, y, test, streamfit_s)
    flaml = metric(task, targets, outputs, classes)
    ours = outcome.metrics[name]
    return {
        "data": Path(data.data).name,
        "label": data.label,
        "task": task,
        "note": data.note,
        "train_rows": len(dataset.train),
        "test_rows": len(dataset.test),
        "features": len(dataset.contract.features),
        "metric": name,
        "max_evals": evals,
        "streamfit": round(ours, 5),
        "lightgbm_defaults": round(default, 5),
        "flaml": round(flaml, 5),
        "streamfit_s": round(streamfit_s, 1),
        "lightgbm_defaults_s": round(default_s, 1),
        "flaml_budget_s": round(streamfit_s, 1),
        **flaml_info,
        "vs_lightgbm_defaults": round(ours / default, 4),
        "vs_flaml": round(ours / flaml, 4),
        "not_worse_than_defaults": ours <= default,
        "within_1pct_of_flaml": ours <= flaml * (1 + FLAML_TOLERANCE),
        "streamfit_metrics": {k: round(v, 5) for k, v in outcome.metrics.items()},
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def measure_repeated(
    data: BenchData, work: Path, max_evals: int | None, repeats: int
) -> dict[str, Any]:
    """:func:`measure` once, or ``repeats`` times on reordered rows: then the medians, the
    targets judged on the median ratios, and every repeat under ``runs``."""
    if repeats == 1:
        return measure(data, work, max_evals)
    runs = []
    for seed in range(repeats):
        print(f"  repeat {seed + 1}/{repeats}", flush=True)
        ordered = reordered(data, seed, work / "orders")
        runs.append(measure(ordered, work / f"order{seed}", max_evals))
    numbers = ("streamfit", "lightgbm_defaults", "flaml", "streamfit_s", "flaml_budget_s")
    medians = {key: statistics.median(run[key] for run in runs) for key in numbers}
    ratios = {
        key: round(statistics.median(run[key] for run in runs), 4)
        for key in ("vs_lightgbm_defaults", "vs_flaml")
    }
    chosen = Counter(run["best_estimator"] for run in runs).most_common(1)[0][0]
    return {
        **{key: runs[0][key] for key in ("label", "task", "metric", "max_evals", "features")},
        "data": Path(data.data).name,
        "note": f"{data.note}{'; ' if data.note else ''}median of {repeats} row orders",
        "test_rows": runs[0]["test_rows"],
        **medians,
        **ratios,
        "best_estimator": chosen,
        "not_worse_than_defaults": ratios["vs_lightgbm_defaults"] <= 1,
        "within_1pct_of_flaml": ratios["vs_flaml"] <= 1 + FLAML_TOLERANCE,
        "vs_flaml_per_repeat": [run["vs_flaml"] for run in runs],
        "vs_lightgbm_defaults_per_repeat": [run["vs_lightgbm_defaults"] for run in runs],
        "repeats": repeats,
        "runs": runs,
    }


def reordered(data: BenchData, seed: int, directory: Path) -> BenchData:
    """``data`` with its table's rows in the order ``seed`` gives (a copy in ``directory``)."""
    source = Path(data.data)
    parquet = source.suffix == ".parquet"
    frame = pd.read_parquet(source) if parquet else pd.read_csv(source)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{source.stem}-{seed}{source.suffix}"
    if parquet:
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
    return dataclasses.replace(data, data=str(target))


def report(results: dict[str, Any]) -> None:
    print(
        "\n| data set | task | metric | streamfit | LightGBM defaults | FLAML (same budget) "
        "| vs defaults | vs FLAML | budget s | targets met |"
    )
    print("|---" * 10 + "|")
    for name, r in results["sets"].items():
        if "error" in r:
            print(f"| {name} | failed: {r['error']} |")
            continue
        met = "yes" if r["not_worse_than_defaults"] and r["within_1pct_of_flaml"] else "no"
        print(
            f"| {name} | {r['task']} | {r['metric']} | {r['streamfit']:.4f} "
            f"| {r['lightgbm_defaults']:.4f} | {r['flaml']:.4f} ({r['best_estimator']}) "
            f"| {r['vs_lightgbm_defaults']:.3f} | {r['vs_flaml']:.3f} | {r['flaml_budget_s']} "
            f"| {met} |"
        )
    for name, r in results["sets"].items():
        if "repeats" in r:
            print(f"{name}: vs FLAML per repeat {r['vs_flaml_per_repeat']}")
    print(f"\nload average {results['machine']['loadavg']} at start, lower ratio is better")


def main(
    data: BenchData | None,
    quick: bool,
    max_evals: int | None,
    out: Path,
    repeats: int = 1,
    names: list[str] | None = None,
) -> int:
    """The data-set path of ``benchmarks/training.py``: ``data`` alone, else the suite (its
    data sets ``names``, else all)."""
    started = time.monotonic()
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }
    mode = "quick" if quick else "full"
    results: dict[str, Any] = {"mode": mode, "machine": machine, "repeats": repeats}
    results["sets"] = {}
    with tempfile.TemporaryDirectory(prefix="streamfit-bench-training-") as tmp:
        work = Path(tmp)
        sets = [data] if data else suite(work / "tables", quick)
        if names:
            unknown = set(names) - {one.name for one in sets}
            if unknown:
                raise SystemExit(f"no data set {', '.join(sorted(unknown))} in the suite")
            sets = [one for one in sets if one.name in names]
        for one in sets:
            print(f"{one.name}: streamfit's initial model, LightGBM defaults, FLAML...", flush=True)
            try:
                results["sets"][one.name] = measure_repeated(one, work, max_evals, repeats)
            except Exception as exc:  # a benchmark reports what it could measure
                print(f"  failed: {exc!r}", flush=True)
                results["sets"][one.name] = {"error": repr(exc)}
    results["wall_s"] = round(time.monotonic() - started, 1)
    report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {out} ({results['wall_s']} s)")
    return 0

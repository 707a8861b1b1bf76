"""The distributed parts of benchmarks/training.py (``--workers 1,2``): one search shared by K
trainers (an Optuna study on PostgreSQL) and the final fit on a Dask cluster of K workers, each
against one process, side by side in one run.

- search: the same trial budget with 1 and with K trainers on full adult.data, per seed: round
  wall clock (``search_K_vs_1`` = wall with 1 / wall with K), CPU seconds used by all trainers,
  the round's adult.test log loss, and the time to the target (test log loss <= 0.276): when the
  first best-so-far trial whose refit reaches it finished.
- dask: one fit of fixed parameters and rounds on a window of adult.data repeated, in one
  process and on a LocalCluster of K single-threaded workers: rows trained per second and the
  peak memory (RSS) per process, whole and above what it held before the window came.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from streamfit.bus import Producer
from streamfit.config import Settings
from streamfit.contract import task_of
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import FEATURE_COLUMNS, load_adult
from streamfit.tracking import NullTracker
from streamfit.training.objective import fit_final
from streamfit.training.round import _RoundData, join_search, run_round
from streamfit.training.space import DEFAULT_SPACE, lightgbm_params
from streamfit.training.study import Announcement
from streamfit.training.trials import TrialStore

TARGET = 0.276  # adult.test log loss (tuned LightGBM's published figure on Adult)
NO_START = dataclasses.replace(DEFAULT_SPACE, start=None)  # same hash: start is not hashed
_CTX = multiprocessing.get_context("spawn")


class _QueueProducer(Producer):
    """The leader's announcement, handed to the helper processes instead of a broker."""

    def __init__(self, queue: Any, helpers: int) -> None:
        self.queue = queue
        self.helpers = helpers

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        for _ in range(self.helpers):
            self.queue.put(value)

    def flush(self, timeout: float | None = None) -> None:
        pass


def _helper(settings: Settings, queue: Any, results: Any) -> None:
    announcement = Announcement.decode(queue.get(timeout=600))
    cpu = time.process_time()
    ran = join_search(settings, announcement, tracker=NullTracker())
    results.put({"ran": ran, "cpu_s": time.process_time() - cpu})


class _Schema:
    """A PostgreSQL schema of its own per run (and Optuna's beside it), dropped afterwards."""

    def __init__(self, url: str) -> None:
        self.url, self.name = url, f"bench_{uuid.uuid4().hex[:10]}"
        self.engine = sa.create_engine(url)
        with self.engine.begin() as db:
            db.exec_driver_sql(f"CREATE SCHEMA {self.name}")

    @property
    def trials_url(self) -> str:
        return f"{self.url}?options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        with self.engine.begin() as db:
            db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
            db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.name}_optuna CASCADE")
        self.engine.dispose()


def _search_run(postgres: str, workers: int, seed: int, budget: int) -> dict[str, Any]:
    schema = _Schema(postgres)
    try:
        with tempfile.TemporaryDirectory(prefix="streamfit-bench-") as scratch:
            settings = Settings(
                data_dir=Path(scratch), optimizer="optuna", trials=schema.trials_url, seed=seed
            )
            queue, results = _CTX.Queue(), _CTX.Queue()
            helpers = [
                _CTX.Process(target=_helper, args=(settings, queue, results))
                for _ in range(workers - 1)
            ]
            for helper in helpers:
                helper.start()
            cpu = time.process_time()
            started = time.perf_counter()
            outcome = run_round(
                settings,
                trigger="manual",
                max_evals=budget,
                tracker=NullTracker(),
                warm_start=False,
                space=NO_START,  # no hand-picked first trial: the search itself is timed
                producer=_QueueProducer(queue, workers - 1),
            )
            wall = time.perf_counter() - started
            cpu_s = time.process_time() - cpu
            ran = [results.get(timeout=600) for _ in helpers]
            for helper in helpers:
                helper.join(60)
            trials = TrialStore(settings.trials_url)
            round_row = trials.rounds()[0]
            to_target = _time_to_target(settings, trials.trials(round_row["round_id"]))
            trials.close()
    finally:
        schema.drop()
    return {
        "workers": workers,
        "seed": seed,
        "budget": budget,
        "wall_s": wall,
        "cpu_s": cpu_s + sum(r["cpu_s"] for r in ran),
        "helper_trials": [r["ran"] for r in ran],
        "cv_loss": outcome.metrics["cv_loss"],
        "params": outcome.params,
        "test_log_loss": outcome.metrics["log_loss"],
        "test_auc": outcome.metrics["auc"],
        "to_target_s": None if to_target is None else to_target - round_row["started"],
    }


def _time_to_target(settings: Settings, trials: list[dict[str, Any]]) -> float | None:
    """When the first best-so-far trial whose refit scores <= TARGET on adult.test finished."""
    data = _RoundData.build(settings, None, None)
    test = load_adult("test")
    features, labels = data.pipeline.transform(test), test["label"].to_numpy()
    best = None
    for trial in sorted(trials, key=lambda t: t["created"]):
        if trial["status"] != "ok" or (best is not None and trial["cv_loss"] >= best):
            continue
        best = trial["cv_loss"]
        booster = fit_final(
            data.features,
            data.labels,
            data.pipeline.categorical_features,
            DEFAULT_SPACE,
            trial["params"],
            trial["rounds"],
            seed=settings.seed,
            feature_names=data.pipeline.feature_names,
            rules=task_of(ADULT),
        )
        if task_of(ADULT).metrics(labels, booster.predict(features))["log_loss"] <= TARGET:
            return trial["created"]
    return None


def part_search(postgres: str, workers: list[int], seeds: list[int], budget: int) -> dict:
    runs = [_search_run(postgres, k, s, budget) for s in seeds for k in workers]
    summary: dict[str, Any] = {}
    for k in workers:
        mine = [r for r in runs if r["workers"] == k]
        reached = [r["to_target_s"] for r in mine if r["to_target_s"] is not None]
        summary[str(k)] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in mine),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in mine),
            "test_log_loss_median": statistics.median(r["test_log_loss"] for r in mine),
            "to_target_s_median": statistics.median(reached) if reached else None,
            "reached_target": len(reached),
        }
    one = summary[str(workers[0])]
    for k in workers[1:]:
        ratios = [
            a["wall_s"] / b["wall_s"]
            for a, b in zip(
                [r for r in runs if r["workers"] == workers[0]],
                [r for r in runs if r["workers"] == k],
                strict=True,
            )
        ]
        summary[f"search_{k}_vs_{workers[0]}"] = statistics.median(ratios)
        summary[f"log_loss_delta_{k}"] = (
            summary[str(k)]["test_log_loss_median"] - one["test_log_loss_median"]
        )
    return {"budget": budget, "seeds": seeds, "runs": runs, "summary": summary}


# -- the Dask fit -----------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _window(copies: int) -> pd.DataFrame:
    train = load_adult("train")[[*FEATURE_COLUMNS, "label"]]
    return pd.concat([train] * copies, ignore_index=True)


def _fit_inputs(window: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    from streamfit.features import FeaturePipeline

    pipeline = FeaturePipeline(ADULT).fit(window)
    full, _cap = lightgbm_params(
        DEFAULT_SPACE,
        dict(DEFAULT_SPACE.start),
        threads=1,
        seed=1,
        feature_names=pipeline.feature_names,
        task=task_of(ADULT).lightgbm_params(),
    )
    return pipeline, full


def _one_process(copies: int, rounds: int, results: Any) -> None:
    import lightgbm as lgb

    import streamfit.features  # noqa: F401  (imports done before the baseline)

    before = _rss_mb()
    window = _window(copies)
    pipeline, full = _fit_inputs(window)
    started = time.perf_counter()
    dataset = lgb.Dataset(
        pipeline.transform(window),
        window["label"].to_numpy(),
        categorical_feature=pipeline.categorical_features,
        params={"verbosity": -1},
    )
    lgb.train(full, dataset, num_boost_round=rounds)
    wall = time.perf_counter() - started
    results.put({"wall_s": wall, "peak_mb": _peak_mb(), "before_mb": before})


def _worker_imports() -> float:
    """Everything a fit task imports, so that the baseline holds the libraries, not data."""
    import dask.array  # noqa: F401
    import lightgbm.dask  # noqa: F401
    import sklearn.preprocessing  # noqa: F401

    import streamfit.features  # noqa: F401

    return _rss_mb()


def part_dask(workers: list[int], copies: int, rounds: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from streamfit.training import dask_fit

    rows = copies * len(load_adult("train"))
    results = _CTX.Queue()
    single = _CTX.Process(target=_one_process, args=(copies, rounds, results))
    single.start()
    one = results.get(timeout=1800)
    single.join(60)
    table = [{"processes": 1, "kind": "one process", "rows": rows, **one}]
    window = _window(copies)
    pipeline, full = _fit_inputs(window)
    for k in workers:
        with (
            LocalCluster(
                n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            before = client.run(_worker_imports)
            started = time.perf_counter()
            dask_fit.fit(
                client,
                dask_fit.scattered_matrix(
                    client, pipeline.transform(window), window["label"].to_numpy(), k
                ),
                pipeline,
                full,
                rounds,
                timeout_s=1800,
            )
            wall = time.perf_counter() - started
            peaks = client.run(_peak_mb)
        table.append(
            {
                "processes": k,
                "kind": "dask workers",
                "rows": rows,
                "wall_s": wall,
                "peak_mb": max(peaks.values()),
                "before_mb": max(before.values()),
            }
        )
    for row in table:
        row["rows_per_s"] = row["rows"] / row["wall_s"]
        row["data_mb"] = row["peak_mb"] - row["before_mb"]
    base = table[0]["data_mb"]
    for row in table[1:]:
        row["data_mb_vs_one_process"] = row["data_mb"] / base
        row["bound"] = 1 / row["processes"] + 0.3
    return {"rows": rows, "rounds": rounds, "table": table}


def report(results: dict[str, Any]) -> None:
    if "search" in results:
        s = results["search"]
        print(f"\nShared search, {s['budget']} trials, seeds {s['seeds']} (full adult.data):")
        print(
            f"{'trainers':>8} {'seed':>4} {'wall s':>7} {'CPU s':>7} {'test logloss':>12} "
            f"{'to 0.276 s':>10}"
        )
        for r in s["runs"]:
            target = "-" if r["to_target_s"] is None else f"{r['to_target_s']:.0f}"
            print(
                f"{r['workers']:>8} {r['seed']:>4} {r['wall_s']:>7.0f} {r['cpu_s']:>7.0f} "
                f"{r['test_log_loss']:>12.4f} {target:>10}"
            )
        for key, value in s["summary"].items():
            print(f"  {key}: {value}")
    if "dask" in results:
        d = results["dask"]
        print(f"\nDask fit, {d['rows']} rows x {d['rounds']} rounds (adult.data repeated):")
        print(
            f"{'processes':>9} {'kind':<13} {'wall s':>7} {'rows/s':>9} {'peak MB':>8} "
            f"{'data MB':>8} {'data vs 1':>9}"
        )
        for r in d["table"]:
            ratio = r.get("data_mb_vs_one_process")
            print(
                f"{r['processes']:>9} {r['kind']:<13} {r['wall_s']:>7.1f} "
                f"{r['rows_per_s']:>9.0f} {r['peak_mb']:>8.0f} {r['data_mb']:>8.0f} "
                f"{'-' if ratio is None else f'{ratio:.2f}':>9}"
            )

"""What a model's size costs end to end: the predictor against the no-op loop while it serves
the first ``k`` trees of one model, beside what those ``k`` trees score on the test rows.

    python benchmarks/model_size.py [--quick] [--rounds N] [--trees 50,100,200,400] [--grid]

Per data set (flights as binary on ``late`` and as regression on ``arr_delay``, the 50,000-row
sample of ``benchmarks/predictor.py --suite your-data --quick``): the initial model of
``streamfit init --max-evals 2``; then for each ``k`` (and the whole model), its first ``k``
trees registered as a version of their own and made champion, compiled once as a predictor that
served it would have it, and ``--rounds`` rounds of the no-op loop then the predictor
at-least-once over the same waiting requests. ``e2e_vs_noop`` is the median over rounds of the
ratio taken within a round; ``test_metric`` the task's loss (log loss, RMSE) of those ``k`` trees
on the data set's test rows.

``--grid`` (instead, no broker; writes ``model-size-grid.json``): what smaller models can do at
all, for the regression set. Models of every learning
rate and leaf count of :data:`GRID`, trained on the same training rows (the pipeline's
features, nothing held out), scored on the test rows at each size of ``--trees``; for each size,
the best one is compiled as the predictor would (``compile_bundle``, the ``auto`` runtime) and
its µs per row timed in batches of 100, beside the whole initial model's first trees.

Prints a table and writes ``benchmarks/results/model-size.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_data import BenchData, flights_sets
from predictor import (
    RESULTS,
    _machine,
    _uri,
    ensure_broker,
    train_model,
    warm_model_cache,
)
from predictor_data import _ratios, one_run, records_of

from streamfit.config import Settings
from streamfit.datasets import Dataset, load_dataset
from streamfit.models.bundle import ModelBundle
from streamfit.models.registry import ModelRegistry
from streamfit.tracking import get_tracker

# (learning rates, leaf counts) of --grid: from LightGBM's default shape to four times its leaves
GRID = ((0.1, 0.2, 0.3), (31, 63, 127, 255))


def registry_of(template: Path) -> ModelRegistry:
    return ModelRegistry.from_settings(Settings(data_dir=template, tracking_uri=_uri(template)))


def serve_first_trees(template: Path, dataset: Dataset, full: ModelBundle, trees: int) -> None:
    """Register the first ``trees`` trees of ``full`` as a new version and make it champion."""
    import lightgbm as lgb

    booster = lgb.Booster(model_str=full.booster.model_to_string(num_iteration=trees))
    bundle = ModelBundle(booster, full.pipeline, {**full.manifest, "trees": trees})
    tracker = get_tracker(Settings(data_dir=template, tracking_uri=_uri(template)))
    example = dataset.test[list(full.contract.features)].head(5)
    with tempfile.TemporaryDirectory(prefix="streamfit-bench-trees-") as scratch:
        bundle.save(Path(scratch))
        tracker.start_round(f"first {trees} trees", {"benchmark": "model_size"})
        try:
            version = tracker.log_model(
                Path(scratch), example, bundle.predict_matrix(full.pipeline.transform(example))
            )
        finally:
            tracker.end_round()
    assert version is not None
    registry_of(template).make_champion(version)


def test_metrics(dataset: Dataset, bundle: ModelBundle, trees: int) -> dict[str, float]:
    """The task's metrics of the first ``trees`` trees of ``bundle`` on the test rows."""
    targets = dataset.test["label"].to_numpy(float)  # encoded as the model was trained on
    features = bundle.pipeline.transform(dataset.test)
    outputs = bundle.booster.predict(features, num_iteration=trees, num_threads=1)
    return {k: round(float(v), 5) for k, v in bundle.rules.metrics(targets, outputs).items()}


def us_per_row(bundle: ModelBundle, rows: np.ndarray) -> float:
    """µs per row of ``bundle`` compiled as the predictor serves it, in batches of 100."""
    from runtimes import time_batches

    from streamfit.serving._compiled import compile_bundle

    with tempfile.TemporaryDirectory(prefix="streamfit-bench-grid-") as scratch:
        bundle.save(Path(scratch))
        predict = compile_bundle(bundle, Path(scratch)).predict
        predict(rows[:100])
        return round(min(time_batches(predict, rows, 100) for _ in range(5)), 2)


def grid(template: Path, full: ModelBundle, sizes: list[int]) -> dict[str, Any]:
    """See ``--grid`` in the module docstring."""
    import lightgbm as lgb

    dataset = load_dataset(Settings(data_dir=template))
    pipeline = full.pipeline
    train = lgb.Dataset(
        pipeline.transform(dataset.train),
        dataset.train["label"].to_numpy(float),
        categorical_feature=pipeline.categorical_features,
    )
    test, targets = pipeline.transform(dataset.test), dataset.test["label"].to_numpy(float)
    timing = test[:1000]
    models, scores = {}, []
    for rate, leaves in itertools.product(*GRID):
        print(f"  grid: learning rate {rate}, {leaves} leaves...", flush=True)
        params = {**full.rules.lightgbm_params(), "learning_rate": rate, "num_leaves": leaves}
        booster = lgb.train({**params, "verbosity": -1, "seed": 42}, train, max(sizes))
        models[rate, leaves] = booster
        for trees in sizes:
            outputs = booster.predict(test, num_iteration=trees)
            rmse = full.rules.metrics(targets, outputs)["rmse"]
            scores.append({"learning_rate": rate, "leaves": leaves, "trees": trees, "rmse": rmse})
    out: dict[str, Any] = {"scores": scores, "best": {}}
    for trees in sizes:
        best = min((s for s in scores if s["trees"] == trees), key=lambda s: s["rmse"])
        booster = models[best["learning_rate"], best["leaves"]]
        cut = lgb.Booster(model_str=booster.model_to_string(num_iteration=trees))
        initial = lgb.Booster(model_str=full.booster.model_to_string(num_iteration=trees))
        out["best"][str(trees)] = best | {
            "us_per_row": us_per_row(ModelBundle(cut, pipeline, {}), timing),
            "initial_model_us_per_row": us_per_row(ModelBundle(initial, pipeline, {}), timing),
        }
    return out


def initial_model(work: Path, data: BenchData) -> tuple[Path, int, ModelBundle]:
    """``streamfit init --max-evals 2`` on ``data``: its data directory, the champion's
    registry version and the champion."""
    template = train_model(work, data.init_args(), data.name)
    registry = registry_of(template)
    champion = registry.champion()
    assert champion is not None
    return template, champion.version, registry.load(champion, work / f"{data.name}-cache")[0]


def measure(
    data: BenchData,
    work: Path,
    bootstrap: str,
    sizes: list[int],
    rounds: int,
    count: int,
) -> dict[str, Any]:
    template, version, full = initial_model(work, data)
    dataset = load_dataset(Settings(data_dir=template))
    total = full.booster.current_iteration()
    records = records_of(template, 20_000, seed=3)
    loss_name = "log_loss" if full.rules.name != "regression" else "rmse"
    out: dict[str, Any] = {"task": full.rules.name, "note": data.note, "trees": total, "sizes": {}}
    for trees in [k for k in sizes if k < total] + [total]:
        if trees < total:
            serve_first_trees(template, dataset, full, trees)
        else:
            registry_of(template).make_champion(version)
        print(f"{data.name}: the first {trees} of {total} trees, compiling...", flush=True)
        warm_model_cache(template)
        metrics = test_metrics(dataset, full, trees)
        runs: dict[str, list[dict[str, Any]]] = {"noop": [], "at-least-once": []}
        for round_ in range(rounds):
            for name, noop_commit in (("noop", 1), ("at-least-once", None)):
                print(f"  round {round_ + 1}/{rounds}: {name}...", flush=True)
                runs[name].append(one_run(template, work, bootstrap, count, noop_commit, records))
        ratios = _ratios(runs, rounds)
        print(f"  e2e_vs_noop {ratios['e2e_vs_noop']}, test {loss_name} {metrics[loss_name]}")
        entry = {"test_metric": metrics[loss_name], "metrics": metrics, "runs": runs}
        out["sizes"][str(trees)] = entry | ratios
    return out


def report(results: dict[str, Any]) -> None:
    print(
        "\n| data set | trees | e2e_vs_noop (target >= 0.8) | predictions/s | test loss "
        "| loss vs the whole model |\n|---|---|---|---|---|---|"
    )
    for name, entry in results["sets"].items():
        whole = entry["sizes"][str(entry["trees"])]["test_metric"]
        for trees, size in entry["sizes"].items():
            print(
                f"| {name} | {trees} | {size['e2e_vs_noop']} | {size['e2e_per_s']:,} "
                f"| {size['test_metric']} | {size['test_metric'] / whole:.3f} |"
            )
    machine = results["machine"]
    print(f"\n{machine['cpus']} CPUs, load average {machine['loadavg']} (at start)")


def report_grid(results: dict[str, Any]) -> None:
    print(
        "\n| trees | best of the grid: rate, leaves | its test RMSE | its µs/row "
        "| the initial model's first trees: µs/row |\n|---|---|---|---|---|"
    )
    for trees, best in results["best"].items():
        print(
            f"| {trees} | {best['learning_rate']}, {best['leaves']} | {best['rmse']:.4f} "
            f"| {best['us_per_row']} | {best['initial_model_us_per_row']} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 30,000 requests")
    parser.add_argument("--rounds", type=int, help="rounds per size (default 3; quick 2)")
    parser.add_argument("--trees", default="50,100,200,400", help="sizes below the whole model")
    parser.add_argument("--port", default="9092", help="the broker's port (scripts/kafka)")
    parser.add_argument("--grid", action="store_true", help="the regression grid only")
    parser.add_argument("--out", type=Path, help="default results/model-size[-grid].json")
    args = parser.parse_args(argv)
    sizes = sorted(int(k) for k in args.trees.split(",") if k)
    rounds = args.rounds or (2 if args.quick else 3)
    count = 30_000 if args.quick else 200_000
    started = time.monotonic()
    results: dict[str, Any] = {"machine": _machine()}
    with tempfile.TemporaryDirectory(prefix="streamfit-bench-size-") as tmp:
        work = Path(tmp)
        sets = flights_sets(work / "tables", 50_000, with_time=False)
        if args.grid:
            template, _, full = initial_model(work, sets[0])
            results |= {"set": sets[0].name, "trees": full.booster.current_iteration()}
            results |= grid(template, full, sizes)
        else:
            bootstrap = ensure_broker(args.port)
            results |= {"requests_per_run": count, "rounds": rounds, "sets": {}}
            for data in sets:
                results["sets"][data.name] = measure(data, work, bootstrap, sizes, rounds, count)
    results["machine_at_end"] = _machine()
    results["wall_s"] = round(time.monotonic() - started, 1)
    (report_grid if args.grid else report)(results)
    out = args.out or RESULTS / ("model-size-grid.json" if args.grid else "model-size.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {out} ({results['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

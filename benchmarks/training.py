"""Training benchmark on UCI Adult: initial champion quality, warm versus cold rounds, 50-trial
round times per optimiser (with and without pruning), and MLflow's overhead on a round.

    python benchmarks/training.py [--quick] [--only init,warm,speed,mlflow]
    python benchmarks/training.py --workers 1,2 [--seeds 5] [--budget 12]

``--workers``: the distributed parts instead (benchmarks/training_workers.py): one search shared
by K trainers on PostgreSQL (``scripts/postgres``) against one, and the fit on a Dask cluster of K
workers against one process; writes benchmarks/results/training-workers.json.


    python benchmarks/training.py --data SOURCE --label COLUMN [--task T] [--ignore COL...]
    python benchmarks/training.py --suite your-data [--quick]

``--data`` / ``--suite your-data`` (issue 22) compare, per data set, the initial model's test
metric with LightGBM's defaults and FLAML on the same budget and split; see
``benchmarks/training_data.py``; results in ``results/training-data[-quick].json``.

Prints a table per part and writes benchmarks/results/training.json (``--quick``:
training-quick.json, tiny budgets on a subsample, a smoke test only). Everything goes through
``run_round``, the services' entry point. LightGBM uses one thread (``train_threads=1``), as in
production; the machine's two cores may be shared with other work, so wall times are upper
bounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from streamfit.config import Settings
from streamfit.datasets.adult import load_adult
from streamfit.tracking import NullTracker
from streamfit.training.round import RoundOutcome, run_round
from streamfit.training.space import DEFAULT_SPACE
from streamfit.training.trials import TrialStore

RESULTS = Path(__file__).parent / "results"
ALL_PARTS = {"init", "warm", "speed", "mlflow"}
TOLERANCE = 0.001  # "reached the cold round's best": within this much CV log loss
NO_START = dataclasses.replace(DEFAULT_SPACE, start=None)  # same hash: start is not hashed


def _settings(directory: Path, **changes: Any) -> Settings:
    return Settings(data_dir=directory, **changes)


def _round(settings: Settings, data: pd.DataFrame | None, evals: int, **kw: Any) -> RoundOutcome:
    kw.setdefault("tracker", NullTracker())
    return run_round(
        settings, trigger=kw.pop("trigger", "manual"), max_evals=evals, base_data=data, **kw
    )


def _curve(settings: Settings, round_id: int) -> list[float | None]:
    """Best CV log loss so far after each trial of a round."""
    best, curve = None, []
    for trial in TrialStore(settings.trials_url).trials(round_id):
        if trial["status"] == "ok":
            best = trial["cv_loss"] if best is None else min(best, trial["cv_loss"])
        curve.append(best)
    return curve


def _trials_to_reach(curve: list[float | None], target: float) -> int | None:
    for number, best in enumerate(curve, start=1):
        if best is not None and best <= target:
            return number
    return None


# -- parts ---------------------------------------------------------------------------------------
def part_init(work: Path, data: pd.DataFrame | None, budget: int) -> dict[str, Any]:
    settings = _settings(work / "init")
    outcome = _round(settings, data, budget, trigger="initial")
    return {
        "budget": budget,
        "optimizer": settings.optimizer,
        "auc": outcome.metrics["auc"],
        "log_loss": outcome.metrics["log_loss"],
        "accuracy": outcome.metrics["accuracy"],
        "cv_loss": outcome.metrics["cv_loss"],
        "best_iteration": outcome.best_iteration,
        "wall_s": outcome.duration_s,
        "params": outcome.params,
    }


def part_warm(
    work: Path, data: pd.DataFrame, seeds: list[int], budget: int, prior_budget: int
) -> dict[str, Any]:
    """Per seed: an earlier round on 80% of the data, then on the full data a warm round (from
    the earlier round's champion and top-k) and a cold round (no history) with equal budgets.

    The earlier round has its own seed (``seed + 1000``): with the others' seed its optimiser
    would draw the very points the cold round draws, and warm start would replay them. The
    warm and the cold round each run on a copy of the data directory the earlier round left,
    so both are round 2 of their store and share everything (rows, CV folds, LightGBM seed and
    the optimiser's seed, which is the settings' seed plus the round id) except
    ``warm_start``.

    All three run without the space's hand-picked start point: a cold round that begins with it
    usually has its best at trial 1 already, which would hide what warm starting contributes.
    The space hash ignores the start point, so warm start works exactly as in production.
    """
    space = NO_START
    runs = []
    for seed in seeds:
        earlier = data.groupby("label", group_keys=False).sample(frac=0.8, random_state=seed)
        earlier_settings = _settings(work / f"earlier-{seed}", seed=seed + 1000)
        _round(earlier_settings, earlier, prior_budget, trigger="initial", space=space)
        outcomes, curves = {}, {}
        for kind in ("warm", "cold"):
            settings = _settings(work / f"{kind}-{seed}", seed=seed)
            shutil.copytree(earlier_settings.data_dir, settings.data_dir)
            outcome = _round(
                settings, data, budget, trigger="retrain", space=space, warm_start=kind == "warm"
            )
            outcomes[kind], curves[kind] = outcome, _curve(settings, outcome.round_id)
        target = min(c for c in curves["cold"] if c is not None) + TOLERANCE
        n_warm = outcomes["warm"].warm_start_points
        runs.append(
            {
                "seed": seed,
                "target": target,
                "warm_trials": _trials_to_reach(curves["warm"], target),
                "cold_trials": _trials_to_reach(curves["cold"], target),
                "warm_points": n_warm,
                # The curve is best-so-far: after the warm points, it is their best.
                "warm_points_best": curves["warm"][n_warm - 1] if n_warm else None,
                "warm_curve": curves["warm"],
                "cold_curve": curves["cold"],
                "warm_best": min(c for c in curves["warm"] if c is not None),
                "cold_best": min(c for c in curves["cold"] if c is not None),
            }
        )
        print(
            f"  seed {seed}: warm reached in {runs[-1]['warm_trials']} trials, "
            f"cold in {runs[-1]['cold_trials']}",
            flush=True,
        )
    return {"budget": budget, "prior_budget": prior_budget, "tolerance": TOLERANCE, "runs": runs}


def part_speed(work: Path, data: pd.DataFrame | None, budget: int) -> list[dict[str, Any]]:
    variants = [
        ("hyperopt", True),
        ("skopt", True),
        ("optuna", True),
        ("optuna", False),
    ]
    rows = []
    for name, pruning in variants:
        label = f"{name}{'' if name != 'optuna' else (' +pruning' if pruning else ' no pruning')}"
        settings = _settings(work / f"speed-{name}-{pruning}", optimizer=name, pruning=pruning)
        # Without the start point, so the CV column compares the optimisers' own search.
        outcome = _round(settings, data, budget, warm_start=False, space=NO_START)
        trials = TrialStore(settings.trials_url).trials(outcome.round_id)
        rows.append(
            {
                "optimizer": label,
                "trials": budget,
                "wall_s": outcome.duration_s,
                "search_s": sum(t["duration_s"] for t in trials),
                "pruned": sum(t["status"] == "pruned" for t in trials),
                "cv_loss": outcome.metrics["cv_loss"],
                "auc": outcome.metrics["auc"],
                "log_loss": outcome.metrics["log_loss"],
            }
        )
        print(f"  {label}: {outcome.duration_s:.0f}s", flush=True)
    return rows


def part_mlflow(work: Path, data: pd.DataFrame | None, budget: int) -> dict[str, Any]:
    """The same round (same seed, data and trials) without and with MLflow; then a second
    MLflow round in the same process, which is what a long-running trainer pays per retrain
    (MLflow and matplotlib already imported)."""
    null = _round(_settings(work / "null"), data, budget, warm_start=False)
    started = time.perf_counter()
    from streamfit.tracking import get_tracker

    settings = _settings(work / "mlflow")
    tracker = get_tracker(settings)  # imports MLflow: once per trainer process
    startup = time.perf_counter() - started
    rounds = [_round(settings, data, budget, warm_start=False, tracker=tracker) for _ in range(2)]

    def ratio(outcome: RoundOutcome) -> float:
        return outcome.tracking_s / (outcome.duration_s - outcome.tracking_s)

    first, steady = rounds
    return {
        "trials": budget,
        "round_without_s": null.duration_s,
        "round_with_s": first.duration_s,
        "tracking_s": first.tracking_s,
        "overhead_ratio": ratio(first),
        "wall_ratio": first.duration_s / null.duration_s - 1,
        "breakdown_s": first.tracking_breakdown,
        "steady_round_s": steady.duration_s,
        "steady_tracking_s": steady.tracking_s,
        "steady_overhead_ratio": ratio(steady),
        "steady_breakdown_s": steady.tracking_breakdown,
        "mlflow_startup_s": startup,
    }


# -- report --------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report(results: dict[str, Any]) -> None:
    if "init" in results:
        r = results["init"]
        print(
            f"\nInitial champion ({r['budget']} trials, {r['optimizer']}): adult.test AUC "
            f"{r['auc']:.4f}, log loss {r['log_loss']:.4f}, accuracy {r['accuracy']:.4f}; "
            f"CV {r['cv_loss']:.4f}; {r['wall_s']:.0f}s"
        )
    if "warm" in results:
        w = results["warm"]
        print(
            f"\nWarm vs cold, {w['budget']} trials each (earlier round: {w['prior_budget']} "
            f"trials on 80% of the rows); trials to reach cold best + {w['tolerance']}:"
        )
        print(
            f"{'seed':>5} {'target':>8} {'warm':>5} {'cold':>5} {'warm pts best':>14} "
            f"{'warm best':>10} {'cold best':>10}"
        )
        for run in w["runs"]:
            print(
                f"{run['seed']:>5} {run['target']:>8.4f} {_fmt(run['warm_trials']):>5} "
                f"{_fmt(run['cold_trials']):>5} {_fmt(run.get('warm_points_best')):>14} "
                f"{run['warm_best']:>10.4f} {run['cold_best']:>10.4f}"
            )
        print("best-so-far curves (CV log loss after each trial):")
        for run in w["runs"]:
            for kind in ("warm", "cold"):
                points = " ".join(_fmt(v) for v in run[f"{kind}_curve"])
                print(f"  seed {run['seed']} {kind}: {points}")
    if "speed" in results:
        print(
            f"\n{'optimiser':<20} {'trials':>6} {'wall s':>7} {'pruned':>6} {'CV':>7} "
            f"{'AUC':>7} {'logloss':>7}"
        )
        for r in results["speed"]:
            print(
                f"{r['optimizer']:<20} {r['trials']:>6} {r['wall_s']:>7.0f} {r['pruned']:>6} "
                f"{r['cv_loss']:>7.4f} {r['auc']:>7.4f} {r['log_loss']:>7.4f}"
            )
    if "mlflow" in results:
        m = results["mlflow"]
        print(
            f"\nMLflow on a {m['trials']}-trial round: first round in a process "
            f"{m['tracking_s']:.2f}s of {m['round_with_s']:.1f}s = "
            f"{100 * m['overhead_ratio']:.1f}% (wall clock vs no MLflow "
            f"{100 * m['wall_ratio']:+.1f}%); next rounds {m['steady_tracking_s']:.2f}s of "
            f"{m['steady_round_s']:.1f}s = {100 * m['steady_overhead_ratio']:.1f}%; MLflow "
            f"import/start-up {m['mlflow_startup_s']:.1f}s once per process"
        )
        for key in ("breakdown_s", "steady_breakdown_s"):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(m[key].items()))
            print(f"  {key}: {parts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets on a subsample")
    parser.add_argument("--only", default=",".join(sorted(ALL_PARTS)), help="parts to run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the warm/cold part")
    parser.add_argument("--workers", help="e.g. 1,2: the distributed parts, K trainers/workers")
    parser.add_argument("--budget", type=int, default=12, help="trials of a shared search")
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg://streamfit:streamfit@127.0.0.1:5432/streamfit",
        help="PostgreSQL of the shared search (scripts/postgres's by default)",
    )
    parser.add_argument("--copies", type=int, default=4, help="adult.data copies in the Dask fit")
    parser.add_argument("--parts", default="search,dask", help="with --workers: search, dask")
    _data_arguments(parser)
    args = parser.parse_args(argv)
    if args.workers:
        return _workers(args)
    if args.data or args.suite:
        return _main_data(parser, args)
    parts = set(args.only.split(","))
    full = load_adult("train")
    if args.quick:
        data: pd.DataFrame | None = full.groupby("label", group_keys=False).sample(
            n=1500, random_state=0
        )
        budgets = {"init": 4, "warm": 5, "prior": 4, "speed": 6, "mlflow": 3}
    else:
        data = None
        budgets = {
            "init": Settings().init_max_evals,
            "warm": 20,
            "prior": 20,
            "speed": 50,
            "mlflow": 10,
        }
    results: dict[str, Any] = {
        "quick": args.quick,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "train_threads": 1,
    }
    with tempfile.TemporaryDirectory(prefix="streamfit-bench-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        if "init" in parts:
            print("initial round...", flush=True)
            results["init"] = part_init(work, data, budgets["init"])
        if "warm" in parts:
            print("warm vs cold...", flush=True)
            seeds = list(range(1, args.seeds + 1))
            warm_data = data if data is not None else full
            results["warm"] = part_warm(work, warm_data, seeds, budgets["warm"], budgets["prior"])
        if "speed" in parts:
            print("round times...", flush=True)
            results["speed"] = part_speed(work, data, budgets["speed"])
        if "mlflow" in parts:
            print("MLflow overhead...", flush=True)
            results["mlflow"] = part_mlflow(work, data, budgets["mlflow"])
        results["wall_s"] = time.perf_counter() - started
    if "warm" in results:
        runs = results["warm"]["runs"]
        reached = [r for r in runs if r["warm_trials"] is not None]
        results["warm"]["summary"] = {
            "warm_median_trials": statistics.median(
                r["warm_trials"] or results["warm"]["budget"] + 1 for r in runs
            ),
            "cold_median_trials": statistics.median(r["cold_trials"] for r in runs),
            "warm_faster_seeds": sum(1 for r in reached if r["warm_trials"] < r["cold_trials"]),
            "seeds": len(runs),
        }
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("training-quick.json" if args.quick else "training.json")
    if parts != ALL_PARTS and out.exists():  # a partial run updates its parts only
        results = {**json.loads(out.read_text()), **{k: results[k] for k in parts}}
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {out}")
    return 0


def _workers(args: argparse.Namespace) -> int:
    import training_workers as distributed

    workers = sorted({int(k) for k in args.workers.split(",")})
    seeds = list(range(1, args.seeds + 1))
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    results: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "load_before": load,
        "train_threads": 1,
    }
    parts = set(args.parts.split(","))
    started = time.perf_counter()
    if "search" in parts:
        print(f"shared search, {workers} trainers...", flush=True)
        results["search"] = distributed.part_search(args.postgres, workers, seeds, args.budget)
    if "dask" in parts:
        print(f"Dask fit, {workers} workers...", flush=True)
        results["dask"] = distributed.part_dask(workers, args.copies, rounds=300)
    results["wall_s"] = time.perf_counter() - started
    results["load_after"] = Path("/proc/loadavg").read_text().split()[:3] if load else []
    distributed.report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "training-workers.json"
    if parts != {"search", "dask"} and out.exists():  # a partial run updates its parts only
        kept = json.loads(out.read_text())
        rerun = {k: results[k] for k in parts}
        results = {**kept, **rerun, f"load_{'_'.join(sorted(parts))}_rerun": results["load_after"]}
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {out}")
    return 0


# -- any data set (issue 22): benchmarks/training_data.py ---------------------------------------
def _data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group(
        "any data set (issue 22; benchmarks/training_data.py): streamfit's initial model beside "
        "LightGBM's defaults and FLAML on the same budget"
    )
    data.add_argument("--data", help="a CSV or Parquet file (with --label)")
    data.add_argument("--label", help="the column to predict")
    data.add_argument("--task", default="auto", help="auto, binary, multiclass or regression")
    data.add_argument("--ignore", nargs="+", default=[], metavar="COLUMN")
    data.add_argument(
        "--suite", choices=["your-data"], help="penguins, breast_cancer, diabetes, flights"
    )
    data.add_argument("--max-evals", type=int, help="streamfit's budget (default init_max_evals)")
    data.add_argument(
        "--repeats", type=int, default=1, help="each on the rows in N orders: medians of N"
    )
    data.add_argument("--sets", help="with --suite: the data sets to run, e.g. penguins,diabetes")
    data.add_argument("--out", type=Path, help="default: results/training-data[-quick].json")


def _main_data(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--data``/``--suite``: per data set, streamfit's initial model, LightGBM, FLAML."""
    import training_data
    from bench_data import BenchData

    if args.data and not args.label:
        parser.error("--data needs --label")
    data = None
    if args.data:
        data = BenchData(Path(args.data).stem, args.data, args.label, args.task, tuple(args.ignore))
    out = args.out or RESULTS / ("training-data-quick.json" if args.quick else "training-data.json")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sets = args.sets.split(",") if args.sets else None
    return training_data.main(data, args.quick, args.max_evals, out, args.repeats, sets)


if __name__ == "__main__":
    raise SystemExit(main())

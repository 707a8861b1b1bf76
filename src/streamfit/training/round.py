"""One training round, end to end: the services' single entry point into training.

data -> feature pipeline -> warm-started search (every trial stored) -> refit with the winner's
params and boosting rounds -> adult.test metrics -> bundle -> MLflow (runs, artifacts, model,
registry alias ``challenger``) -> champion/challenger gate -> maybe promote (alias ``champion``).

**Warm-start rule.** A round first evaluates, in this order and without duplicates: the current
champion's parameters (if the champion was trained in the same search space), then the
``warm_start_top_k`` best completed trials of all earlier rounds whose search-space hash equals
the current one. They are *re-evaluated* on this round's data rather than trusted, because old
scores were measured on other data; their fresh results are told to the optimiser before it
proposes anything, so its model starts informed. Warm-start trials count towards ``max_evals``.
A change to the search space (ranges, dimensions, fixed params) changes the hash and starts cold.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bundle import MANIFEST_FILE, BundleError, ModelBundle, ModelStore
from ..config import Settings
from ..data import FEATURE_COLUMNS, load_adult
from ..features import FeaturePipeline
from .gate import decide, split_fixed_holdout, split_recent
from .objective import CVObjective, classification_metrics, fit_final
from .optimizers import get_optimizer
from .space import DEFAULT_SPACE, SearchSpace, params_key
from .tracking import NullTracker, Tracker, get_tracker
from .trials import TrialStore, data_fingerprint

TRIGGERS = ("initial", "retrain", "manual")


class TrainingError(RuntimeError):
    """A round could not produce a model (e.g. every trial failed)."""


@dataclass(frozen=True)
class RoundOutcome:
    version: int  # bundle version written by this round
    promoted: bool
    reason: str
    metrics: dict[str, float]  # adult.test auc/log_loss/accuracy, cv_logloss, holdout_log_loss...
    champion_version: int | None  # after the gate
    duration_s: float
    n_trials: int
    round_id: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # the winner's searched params
    best_iteration: int = 0
    warm_start_points: int = 0
    mlflow_run_id: str | None = None
    registry_version: int | None = None
    tracking_s: float = 0.0  # time spent in the tracker (MLflow overhead)


def run_round(
    settings: Settings,
    *,
    trigger: str,
    max_evals: int,
    new_observations: pd.DataFrame | None = None,
    tracker: Tracker | None = None,
    progress: Callable[[str], None] | None = None,
    base_data: pd.DataFrame | None = None,
    space: SearchSpace = DEFAULT_SPACE,
    warm_start: bool = True,
) -> RoundOutcome:
    """Run one round (see the module docstring) and return what happened.

    ``new_observations``: labelled observations (raw Adult columns + ``label``, oldest first),
    added to adult.data; their newest share is held out for the gate. ``base_data`` replaces
    adult.data (tests and benchmarks use a subsample); ``warm_start=False`` starts cold.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
    if max_evals < 1:
        raise ValueError(f"max_evals must be at least 1, got {max_evals}")
    started = time.perf_counter()
    say = progress or (lambda _line: None)
    timed = _TimedTracker(tracker if tracker is not None else get_tracker(settings))

    # -- data: everything the gate scores on is kept out of training ---------------------------
    original = base_data if base_data is not None else _adult("train")
    original = original[[*FEATURE_COLUMNS, "label"]]
    fixed_train, fixed_holdout = split_fixed_holdout(original, settings.holdout_fraction)
    recent_train, recent_holdout = split_recent(new_observations, settings.gate_recent_fraction)
    parts = [fixed_train, recent_train] if len(recent_train) else [fixed_train]
    train = pd.concat(parts, ignore_index=True)
    holdout_parts = [fixed_holdout, recent_holdout] if len(recent_holdout) else [fixed_holdout]
    holdout = pd.concat(holdout_parts, ignore_index=True)
    rows, data_hash = data_fingerprint(train)
    labels = train["label"].to_numpy()
    pipeline = FeaturePipeline().fit(train)
    features = pipeline.transform(train)
    objective = CVObjective(
        features,
        labels,
        pipeline.categorical_features,
        space,
        threads=settings.train_threads,
        seed=settings.seed,
    )

    store = ModelStore(settings.models_dir, settings.keep_models)
    trials = TrialStore(settings.trials_url)
    points = _warm_points(settings, store, trials, space)[:max_evals] if warm_start else []
    round_id = trials.begin_round(
        trigger=trigger,
        optimizer=settings.optimizer,
        data_rows=rows,
        data_hash=data_hash,
        space_hash=space.hash,
    )
    # Seeded per round: the same seed every round would replay round 1's random start-up points.
    optimizer = get_optimizer(
        settings.optimizer, space, seed=settings.seed + round_id, pruning=settings.pruning
    )
    optimizer.warm_start(points)
    say(
        f"round {round_id} ({trigger}, {optimizer.name}, {max_evals} trials): {rows} training "
        f"rows ({len(recent_train)} observed), {len(holdout)} holdout rows "
        f"({len(recent_holdout)} observed), {len(points)} warm-start point(s)"
    )
    run_id = timed.start_round(
        f"round-{round_id}",
        {
            "round": str(round_id),
            "trigger": trigger,
            "optimizer": optimizer.name,
            "data_rows": str(rows),
            "data_hash": data_hash,
            "space_hash": space.hash,
            "warm_start_points": str(len(points)),
        },
    )
    try:
        outcome = _search_refit_gate(
            settings, trigger, max_evals, timed, say, store, trials, optimizer, objective,
            pipeline, features, labels, holdout, round_id, run_id, rows, data_hash, space,
            len(points), started,
        )  # fmt: skip
    except BaseException:
        timed.end_round("FAILED")
        trials.finish_round(round_id, "failed")
        trials.close()
        raise
    timed.end_round("FINISHED")
    trials.finish_round(
        round_id,
        "done",
        model_version=outcome.version,
        promoted=outcome.promoted,
        mlflow_run_id=run_id,
    )
    trials.close()
    duration = time.perf_counter() - started
    spent = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(timed.breakdown.items()))
    say(f"round {round_id} done in {duration:.1f}s (tracking {timed.seconds:.1f}s: {spent})")
    return _replace(outcome, duration_s=duration, tracking_s=timed.seconds)


def _search_refit_gate(
    settings: Settings,
    trigger: str,
    max_evals: int,
    tracker: _TimedTracker,
    say: Callable[[str], None],
    store: ModelStore,
    trials: TrialStore,
    optimizer: Any,
    objective: CVObjective,
    pipeline: FeaturePipeline,
    features: np.ndarray,
    labels: np.ndarray,
    holdout: pd.DataFrame,
    round_id: int,
    run_id: str | None,
    rows: int,
    data_hash: str,
    space: SearchSpace,
    n_warm: int,
    started: float,
) -> RoundOutcome:
    # -- search ---------------------------------------------------------------------------------
    best: tuple[dict[str, Any], Any] | None = None
    for _ in range(max_evals):
        suggestion = optimizer.ask()
        callback = optimizer.pruning_callback(suggestion)
        result = objective(suggestion.params, [callback] if callback else [])
        optimizer.tell(suggestion, result.loss, result.status)
        trials.add_trial(
            round_id,
            suggestion.number,
            suggestion.params,
            loss=result.loss,
            loss_std=result.loss_std,
            rounds=result.rounds,
            duration_s=result.duration_s,
            status=result.status,
            optimizer=optimizer.name,
            data_rows=rows,
            data_hash=data_hash,
            space_hash=space.hash,
            warm=suggestion.warm,
        )
        metrics = {"cv_logloss": result.loss, "rounds": result.rounds}
        if result.loss_std is not None:
            metrics["cv_logloss_std"] = result.loss_std
        metrics["duration_s"] = result.duration_s
        metrics["pruned"] = float(result.status == "pruned")
        tracker.log_trial(suggestion.number, suggestion.params, metrics)
        if result.status == "ok" and (best is None or result.loss < best[1].loss):
            best = (suggestion.params, result)
        say(_trial_line(suggestion.number, max_evals, suggestion.warm, result, best))
    if best is None:
        raise TrainingError(f"round {round_id}: none of {max_evals} trials completed")
    params, winner = best

    # -- refit on every training row with the winner's params and rounds -----------------------
    booster = fit_final(
        features,
        labels,
        pipeline.categorical_features,
        space,
        params,
        winner.rounds,
        threads=settings.train_threads,
        seed=settings.seed,
    )
    test = _adult("test")
    test_probabilities = booster.predict(
        pipeline.transform(test), num_threads=settings.train_threads
    )
    test_metrics = classification_metrics(test["label"].to_numpy(), test_probabilities)
    say(
        f"refit: {winner.rounds} boosting rounds; adult.test AUC {test_metrics['auc']:.4f}, "
        f"log loss {test_metrics['log_loss']:.4f}, accuracy {test_metrics['accuracy']:.4f}"
    )
    metrics = {
        "auc": test_metrics["auc"],
        "log_loss": test_metrics["log_loss"],
        "accuracy": test_metrics["accuracy"],
        "cv_logloss": float(winner.loss),
        "cv_logloss_std": float(winner.loss_std or 0.0),
    }
    bundle = ModelBundle(
        booster,
        pipeline,
        manifest={
            "metrics": dict(metrics),
            "data_rows": rows,
            "data_hash": data_hash,
            "params": params,
            "best_iteration": winner.rounds,
            "trigger": trigger,
            "optimizer": optimizer.name,
            "round_id": round_id,
            "space_hash": space.hash,
            "mlflow_run_id": run_id,
            "registry_version": None,
        },
    )
    version = store.save(bundle)

    # -- MLflow: artifacts, the model (once), alias challenger ---------------------------------
    if tracker.wants_artifacts:
        with tempfile.TemporaryDirectory(prefix="streamfit-artifacts-") as scratch:
            from .artifacts import write_round_artifacts

            with tracker.timing("plots"):
                write_round_artifacts(
                    Path(scratch),
                    trials.trials(round_id),
                    space,
                    test["label"].to_numpy(),
                    test_probabilities,
                )
            tracker.log_artifacts(Path(scratch))
    example = test[list(FEATURE_COLUMNS)].dropna().head(5).reset_index(drop=True)
    registry_version = tracker.log_model(
        store.path(version), example, booster.predict(pipeline.transform(example))
    )
    if registry_version is not None:
        tracker.set_alias("challenger", registry_version)
        bundle.manifest["registry_version"] = registry_version
        _write_manifest(store, version, bundle.manifest)

    # -- gate -----------------------------------------------------------------------------------
    decision = decide(bundle, store, holdout, settings.gate_tolerance)
    if decision.promoted:
        store.set_champion(version)
        trials.record_champion(version, decision.reason)
        if registry_version is not None:
            tracker.set_alias("champion", registry_version)
    say(f"gate: v{version} {decision.reason}")
    metrics["holdout_log_loss"] = decision.challenger["log_loss"]
    if decision.champion is not None:
        metrics["champion_holdout_log_loss"] = decision.champion["log_loss"]
    tracker.log_round(
        params=params,
        metrics={
            "best_cv_logloss": metrics["cv_logloss"],
            "test_auc": metrics["auc"],
            "test_log_loss": metrics["log_loss"],
            "test_accuracy": metrics["accuracy"],
            "holdout_log_loss": metrics["holdout_log_loss"],
            **(
                {"champion_holdout_log_loss": metrics["champion_holdout_log_loss"]}
                if decision.champion is not None
                else {}
            ),
            "best_iteration": winner.rounds,
            "n_trials": max_evals,
            "search_s": time.perf_counter() - started,
        },
        tags={
            "gate": "promoted" if decision.promoted else "refused",
            "gate_reason": decision.reason,
            "model_version": str(version),
            "registry_version": str(registry_version),
            "compared_with": str(decision.champion_version),
        },
    )
    return RoundOutcome(
        version=version,
        promoted=decision.promoted,
        reason=decision.reason,
        metrics=metrics,
        champion_version=store.champion(),
        duration_s=0.0,
        n_trials=max_evals,
        round_id=round_id,
        params=params,
        best_iteration=winner.rounds,
        warm_start_points=n_warm,
        mlflow_run_id=run_id,
        registry_version=registry_version,
    )


def _warm_points(
    settings: Settings, store: ModelStore, trials: TrialStore, space: SearchSpace
) -> list[dict[str, Any]]:
    """Champion's params first, then the best distinct earlier trials (same space hash)."""
    points: list[dict[str, Any]] = []
    champion = store.champion()
    if champion is not None:
        try:
            manifest = store.load(champion).manifest
        except BundleError:
            manifest = {}
        if manifest.get("space_hash") == space.hash and manifest.get("params"):
            with contextlib.suppress(KeyError, TypeError, ValueError):  # params of an old space
                points.append(space.snap(manifest["params"]))
    seen = {params_key(p) for p in points}
    for candidate in trials.warm_start_points(space.hash, settings.warm_start_top_k, seen):
        try:
            points.append(space.snap(candidate))
        except (KeyError, TypeError, ValueError):
            continue
    return points


def _trial_line(number: int, total: int, warm: bool, result: Any, best: Any) -> str:
    origin = " [warm start]" if warm else ""
    best_text = f"{best[1].loss:.4f}" if best else "-"
    if result.status == "ok":
        return (
            f"trial {number + 1}/{total}{origin}: cv logloss {result.loss:.4f} "
            f"at {result.rounds} rounds (best {best_text})"
        )
    if result.status == "pruned":
        return f"trial {number + 1}/{total}{origin}: pruned at round {result.rounds}"
    return f"trial {number + 1}/{total}{origin}: failed ({result.error})"


def _write_manifest(store: ModelStore, version: int, manifest: Mapping[str, Any]) -> None:
    """Atomic rewrite: a predictor may load the bundle at any moment."""
    directory = store.path(version)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".manifest-")
    with os.fdopen(handle, "w") as out:
        json.dump(dict(manifest), out, indent=2, default=str)
    os.replace(temporary, directory / MANIFEST_FILE)


@cache
def _adult_cached(split: str) -> pd.DataFrame:
    return load_adult(split)  # type: ignore[arg-type]


def _adult(split: str) -> pd.DataFrame:
    return _adult_cached(split).copy()


def _replace(outcome: RoundOutcome, **changes: Any) -> RoundOutcome:
    import dataclasses

    return dataclasses.replace(outcome, **changes)


class _TimedTracker(Tracker):
    """Forwards to a tracker and adds up the time spent in it (MLflow's overhead)."""

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.breakdown: dict[str, float] = {}
        self.wants_artifacts = not isinstance(inner, NullTracker)

    def timing(self, what: str = "artifacts") -> _Timer:
        return _Timer(self, what)

    def start_round(self, name: str, tags: Mapping[str, str]) -> str | None:
        with self.timing("start_round"):
            return self.inner.start_round(name, tags)

    def log_trial(self, number: int, params: Mapping[str, Any], metrics: Mapping[str, float]):
        with self.timing("log_trial"):
            self.inner.log_trial(number, params, metrics)

    def end_round(self, status: str = "FINISHED") -> None:
        with self.timing("end_round"):
            self.inner.end_round(status)

    def log_round(self, params=None, metrics=None, tags=None) -> None:
        with self.timing("log_round"):
            self.inner.log_round(params, metrics, tags)

    def log_artifacts(self, directory: Path, path: str | None = None) -> None:
        with self.timing("log_artifacts"):
            self.inner.log_artifacts(directory, path)

    def log_model(self, bundle_dir: Path, input_example: Any, output_example: Any) -> int | None:
        with self.timing("log_model"):
            return self.inner.log_model(bundle_dir, input_example, output_example)

    def set_alias(self, alias: str, registry_version: int) -> None:
        with self.timing("set_alias"):
            self.inner.set_alias(alias, registry_version)


class _Timer:
    def __init__(self, owner: _TimedTracker, what: str) -> None:
        self.owner = owner
        self.what = what

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        elapsed = time.perf_counter() - self._start
        self.owner.seconds += elapsed
        self.owner.breakdown[self.what] = self.owner.breakdown.get(self.what, 0.0) + elapsed


__all__ = ["TRIGGERS", "RoundOutcome", "TrainingError", "run_round"]

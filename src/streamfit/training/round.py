"""One training round, end to end: the services' single entry point into training.

data -> feature pipeline -> warm-started search (every trial stored) -> refit with the winner's
params and boosting rounds -> adult.test metrics -> bundle -> MLflow (runs, artifacts, model,
registry alias ``challenger``) -> champion/challenger gate -> maybe promote (alias ``champion``).

**Warm-start rule.** A round first evaluates, in this order and without duplicates: the current
champion's parameters (if the champion was trained in the same search space), then the
``warm_start_top_k`` best completed trials of all earlier rounds whose search-space hash equals
the current one. They are *re-evaluated* on this round's data rather than trusted, because old
scores were measured on other data; their fresh results are told to the optimiser before it
proposes anything, so its model starts informed. They count as the optimiser's start-up
trials: with ``n_startup`` (5) or more of them, its model proposes from the next trial on and
refines around the best of them (random points drawn after them were no better on the
benchmark, and would leave a 10-trial retrain no model-based trial). Warm-start trials count
towards ``max_evals``.
A change to the search space (ranges, dimensions, fixed params) changes the hash and starts cold.
A cold round (nothing to warm-start from, or ``warm_start=False``) evaluates the space's
``start`` point first.

**Drift-aware rounds.** With ``settings.drop_drifting_features`` above 0, the round first scores
each feature's drift (MLBox's per-feature score, see ``monitoring.drifting_features``) between the
original training data and the recent requests, and leaves out every feature whose score reaches
the threshold, as MLBox's drift thresholder does. The fitted feature pipeline records what it
dropped, so serving drops the same columns; so do the bundle manifest, the MLflow run's tags and
the round's log line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..config import Settings
from ..contract import Contract, TaskRules, task_of
from ..datasets import Dataset, load_dataset
from ..features import FeaturePipeline
from ..models import promotion
from ..models.bundle import BundleError, ModelBundle, ModelStore, bundle_sha256
from ..ops.progress import Progress, as_progress
from ..tracking import Tracker, get_tracker
from ..tracking._timed import TimedTracker
from .gate import GateDecision, decide, split_fixed_holdout, split_recent
from .objective import CVObjective, CVResult, fit_final, refit_rounds
from .optimizers import Optimizer, get_optimizer
from .space import DEFAULT_SPACE, SearchSpace, lightgbm_params, params_key
from .study import Announcement, SharedStudy, SharedTrial, is_shared
from .trials import TrialStore, data_fingerprint, record_trial, trial_line

if TYPE_CHECKING:
    from ..bus import Producer

log = logging.getLogger("streamfit.round")

TRIGGERS = ("initial", "retrain", "manual", "drift")
MIN_DRIFT_ROWS = 100  # fewer recent rows than this: too noisy to drop features on


class TrainingError(RuntimeError):
    """A round could not produce a model (e.g. every trial failed)."""


@dataclass(frozen=True)
class RoundOutcome:
    version: int  # bundle version written by this round
    promoted: bool
    reason: str
    # the task's test metrics (binary: auc, log_loss, accuracy), cv_loss (the CV loss: log
    # loss, or RMSE for regression), cv_loss_std, and holdout_<loss> also as holdout_loss
    metrics: dict[str, float]
    champion_version: int | None  # after the gate
    duration_s: float
    n_trials: int
    round_id: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # the winner's searched params
    best_iteration: int = 0  # the winner's CV boosting rounds (the refit scales them up)
    warm_start_points: int = 0
    mlflow_run_id: str | None = None
    registry_version: int | None = None
    tracking_s: float = 0.0  # time spent in the tracker: MLflow's overhead
    tracking_breakdown: dict[str, float] = field(default_factory=dict)  # per tracker call
    dropped_features: list[str] = field(default_factory=list)  # left out for drifting
    compared_with: int | None = None  # the champion the gate compared the challenger with


def run_round(
    settings: Settings,
    *,
    trigger: str,
    max_evals: int,
    new_observations: pd.DataFrame | None = None,
    tracker: Tracker | None = None,
    progress: Progress | Callable[[str], None] | None = None,
    base_data: pd.DataFrame | None = None,
    space: SearchSpace = DEFAULT_SPACE,
    warm_start: bool = True,
    recent: pd.DataFrame | None = None,
    producer: Producer | None = None,
) -> RoundOutcome:
    """Run one round (see the module docstring) and return what happened.

    ``new_observations``: labelled observations (raw columns + the encoded ``label``, oldest
    first), added to the data set's training rows (``streamfit.datasets``: the user's table or
    Adult); their newest ``gate_recent_fraction`` is held out for the gate. ``base_data``
    replaces the training rows (tests and benchmarks use a subsample);
    ``warm_start=False`` starts cold. ``recent``: the latest requests, labelled or not, that a
    drift-aware round compares with the training data (default: ``new_observations``).
    ``progress`` hears each trial (``update("trials", k, n)`` with its line) and the round's
    other steps (a function taking lines will do). LightGBM uses ``settings.train_threads``
    threads throughout, so a predictor on the same machine keeps its core.

    With a registry (the MLflow tracker), the bundle is registered before the gate and stored
    locally under its registry version; a promotion goes through :func:`promotion.promote`,
    which announces it on ``models`` (through ``producer`` when given).
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
    if max_evals < 1:
        raise ValueError(f"max_evals must be at least 1, got {max_evals}")
    started = time.perf_counter()
    timed = TimedTracker(tracker if tracker is not None else get_tracker(settings))
    trials = TrialStore(settings.trials_url)
    _sync_champion(settings, timed)
    # LightGBM gets train_threads explicitly; this bounds the BLAS pools too (scikit-optimize's
    # GP fits, sklearn metrics), so a predictor on the same machine keeps its core.
    with threadpool_limits(limits=settings.train_threads):
        try:
            data = _RoundData.build(settings, base_data, new_observations, recent)
            outcome = _Round(
                settings, trigger, max_evals, space, timed, trials, data, progress, warm_start
            ).run(started, producer)
        finally:
            trials.close()
    return dataclasses.replace(
        outcome,
        duration_s=time.perf_counter() - started,
        tracking_s=timed.seconds,
        tracking_breakdown=dict(timed.breakdown),
    )


@dataclass
class _RoundData:
    """Training rows, gate holdout rows, and the fitted pipeline's matrix."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    observed_train: int
    observed_holdout: int
    rows: int
    data_hash: str
    dataset: Dataset
    pipeline: FeaturePipeline
    features: np.ndarray
    labels: np.ndarray
    dropped: list[str] = field(default_factory=list)
    labelled_upto: float | None = None  # the newest observation's labelled_at, if any

    @classmethod
    def build(
        cls,
        settings: Settings,
        base_data: pd.DataFrame | None,
        new_observations: pd.DataFrame | None,
        recent: pd.DataFrame | None = None,
        dropped: list[str] | None = None,
    ) -> _RoundData:
        """``dropped``: the features a leader left out (a trainer joining its search)."""
        # Everything the gate scores on is kept out of training (see gate.py).
        dataset = load_dataset(settings)
        contract = dataset.contract
        features = list(contract.features)
        original = base_data if base_data is not None else dataset.train
        original = original[[*features, "label"]]
        stratified = task_of(contract).stratified
        fixed_train, fixed_holdout = split_fixed_holdout(
            original, settings.holdout_fraction, stratified
        )
        recent_train, recent_holdout = split_recent(
            new_observations, settings.gate_recent_fraction, features
        )
        train = _concat(fixed_train, recent_train)
        rows, data_hash = data_fingerprint(train)
        current = recent if recent is not None else new_observations
        if dropped is None:
            dropped = _drifting(settings, contract, fixed_train, current)
        pipeline = FeaturePipeline(contract, drop=dropped).fit(train)
        return cls(
            train=train,
            holdout=_concat(fixed_holdout, recent_holdout),
            observed_train=len(recent_train),
            observed_holdout=len(recent_holdout),
            rows=rows,
            data_hash=data_hash,
            dataset=dataset,
            pipeline=pipeline,
            features=pipeline.transform(train),
            labels=train["label"].to_numpy(),
            dropped=dropped,
            labelled_upto=_labelled_upto(new_observations),
        )


def _labelled_upto(observations: pd.DataFrame | None) -> float | None:
    if observations is None or observations.empty or "labelled_at" not in observations:
        return None
    return float(observations["labelled_at"].max())


def _drifting(
    settings: Settings, contract: Contract, reference: pd.DataFrame, current: pd.DataFrame | None
) -> list[str]:
    """Features to leave out: per-feature drift score >= ``drop_drifting_features``."""
    threshold = settings.drop_drifting_features
    if threshold <= 0 or current is None or len(current) < MIN_DRIFT_ROWS:
        return []
    from ..drift.detector import DriftDetector, drifting_features  # SciPy: on first use

    detector = DriftDetector.from_settings(settings, contract)
    dropped = drifting_features(reference, current, threshold, detector=detector)
    # Never everything: a model needs a feature; keep the least drifting one.
    return dropped[:-1] if len(dropped) == len(contract.features) else dropped


class _Round:
    def __init__(
        self,
        settings: Settings,
        trigger: str,
        max_evals: int,
        space: SearchSpace,
        tracker: TimedTracker,
        trials: TrialStore,
        data: _RoundData,
        progress: Progress | Callable[[str], None] | None,
        warm_start: bool,
    ) -> None:
        self.settings = settings
        self.trigger = trigger
        self.max_evals = max_evals
        self.space = space
        self.tracker = tracker
        self.trials = trials
        self.data = data
        self.rules: TaskRules = task_of(data.dataset.contract)
        self.progress = as_progress(progress)
        self.say = self.progress.note
        self.store = ModelStore(settings.models_dir, settings.keep_models)
        points = _warm_points(settings, self.store, trials, space) if warm_start else []
        if space.start is not None and not points:
            points = [dict(space.start)]  # cold round: begin from the known-good point
        self.points = points[:max_evals]
        self.round_id = 0
        self.run_id: str | None = None
        self.producer: Producer | None = None

    def run(self, started: float, producer: Producer | None = None) -> RoundOutcome:
        data, settings = self.data, self.settings
        self.producer = producer
        self.round_id = self.trials.begin_round(
            trigger=self.trigger,
            optimizer=settings.optimizer,
            data_rows=data.rows,
            data_hash=data.data_hash,
            space_hash=self.space.hash,
        )
        # Seeded per round: one seed for every round would replay round 1's random start-up.
        optimizer = get_optimizer(
            settings.optimizer,
            self.space,
            seed=settings.seed + self.round_id,
            pruning=settings.pruning,
        )
        optimizer.warm_start(self.points)
        self.say(
            f"round {self.round_id} ({self.trigger}, {optimizer.name}, {self.max_evals} "
            f"trials): {data.rows} training rows ({data.observed_train} observed), "
            f"{len(data.holdout)} holdout rows ({data.observed_holdout} observed), "
            f"{len(self.points)} warm-start point(s)"
        )
        if settings.drop_drifting_features > 0:
            self.say(
                f"drift-aware round (threshold {settings.drop_drifting_features}): dropped "
                f"{', '.join(data.dropped) if data.dropped else 'no feature'}"
            )
        self.run_id = self.tracker.start_round(
            f"round-{self.round_id}",
            {
                "round": str(self.round_id),
                "trigger": self.trigger,
                "optimizer": optimizer.name,
                "data_rows": str(data.rows),
                "data_hash": data.data_hash,
                "space_hash": self.space.hash,
                "warm_start_points": str(len(self.points)),
                "drop_drifting_features": str(settings.drop_drifting_features),
                "dropped_features": ",".join(data.dropped),
                "max_boost_rounds": str(settings.max_boost_rounds),
            },
        )
        try:
            outcome = self._search_refit_gate(optimizer)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the failure itself is what gets reported
                self.tracker.describe_round(
                    f"{self._triggered_by()}\n\n**Failed** ({type(exc).__name__}): {exc}"
                )
            self.tracker.end_round("FAILED")
            self.trials.finish_round(self.round_id, "failed", mlflow_run_id=self.run_id)
            raise
        self.tracker.end_round("FINISHED")
        self.trials.finish_round(
            self.round_id,
            "done",
            model_version=outcome.version,
            promoted=outcome.promoted,
            mlflow_run_id=self.run_id,
            gate_reason=outcome.reason,
            compared_with=outcome.compared_with,
        )
        self.say(f"round {self.round_id} done in {time.perf_counter() - started:.1f}s")
        log.debug("round %s: tracking took %s", self.round_id, self.tracker.summary())
        return outcome

    def _search_refit_gate(self, optimizer: Optimizer) -> RoundOutcome:
        params, winner = self._search(optimizer)
        booster, test_labels, test_probabilities, metrics = self._refit(params, winner)
        bundle = self._bundle(booster, params, winner, metrics, optimizer.name)
        registry_version = self._publish(bundle, test_labels, test_probabilities)
        version = self.store.save(bundle, registry_version)  # its registry version, if any
        decision = self._gate(bundle, version, registry_version, metrics)
        loss = self.rules.loss
        metrics[f"holdout_{loss}"] = metrics["holdout_loss"] = decision.challenger[loss]
        if decision.champion is not None:
            metrics[f"champion_holdout_{loss}"] = decision.champion[loss]
        self._log_round(params, winner, metrics, decision, version, registry_version)
        return RoundOutcome(
            version=version,
            promoted=decision.promoted,
            reason=decision.reason,
            metrics=metrics,
            champion_version=self.store.champion(),
            duration_s=0.0,
            n_trials=self.max_evals,
            round_id=self.round_id,
            params=params,
            best_iteration=winner.rounds,
            warm_start_points=len(self.points),
            mlflow_run_id=self.run_id,
            registry_version=registry_version,
            dropped_features=list(self.data.dropped),
            compared_with=decision.champion_version,
        )

    def _search(self, optimizer: Optimizer) -> tuple[dict[str, Any], CVResult]:
        data = self.data
        objective = _objective(self.settings, data, self.space)
        if is_shared(self.settings):
            return self._shared_search(objective)
        best: tuple[dict[str, Any], CVResult] | None = None
        for done in range(1, self.max_evals + 1):
            suggestion = optimizer.ask()
            callback = optimizer.pruning_callback(suggestion)
            result = objective(suggestion.params, [callback] if callback else [])
            optimizer.tell(suggestion, result.loss, result.status)
            record_trial(
                self.trials,
                self.tracker,
                self.round_id,
                suggestion.number,
                suggestion.params,
                result,
                optimizer=optimizer.name,
                warm=suggestion.warm,
                data_rows=data.rows,
                data_hash=data.data_hash,
                space_hash=self.space.hash,
                loss=self.rules.loss,
            )
            if result.status == "ok" and (best is None or result.loss < best[1].loss):
                best = (suggestion.params, result)
            best_loss = best[1].loss if best else None
            line = trial_line(
                suggestion.number,
                self.max_evals,
                suggestion.warm,
                result,
                best_loss,
                self.rules.loss,
            )
            self.progress.update("trials", done, self.max_evals, line)
        if best is None:
            raise TrainingError(f"round {self.round_id}: none of {self.max_evals} trials completed")
        return best

    def _shared_search(self, objective: CVObjective) -> tuple[dict[str, Any], CVResult]:
        """The round's study, announced for the other trainers to join (``study.py``); the
        best completed trial of every worker's once the budget is spent."""
        name = f"streamfit-round-{self.round_id}-{self.data.data_hash}"
        study = SharedStudy(self.settings, name, self.max_evals, create=True)
        try:
            study.enqueue(self.points)
            announcement = Announcement(
                study=name,
                round_id=self.round_id,
                budget=self.max_evals,
                data_rows=self.data.rows,
                data_hash=self.data.data_hash,
                space_hash=self.space.hash,
                run_id=self.run_id,
                dropped=list(self.data.dropped),
                labelled_upto=self.data.labelled_upto,
            )
            if self.producer is not None:
                self.producer.produce(self.settings.topics.search, announcement.encode())
                self.producer.flush()
            self.say(f"search shared as study {name} (trial store's PostgreSQL)")
            evaluate = SharedTrial(
                objective,
                self.trials,
                self.tracker,
                self.round_id,
                self.data.rows,
                self.data.data_hash,
                self.space,
                study,
                self.progress,
                self.settings.pruning,
                loss=self.rules.loss,
            )
            study.work(evaluate)
            winner = study.best()
            if winner is None:
                raise TrainingError(
                    f"round {self.round_id}: none of {self.max_evals} trials completed"
                )
            workers = {t.user_attrs.get("worker") for t in study.trials()}
            self.say(
                f"search done: {len(study.trials())} trial(s) by {len(workers)} trainer(s), "
                f"best cv {self.rules.loss.replace('_', ' ')} {winner.value:.4f}"
            )
            return self.space.snap(winner.params), CVResult(
                loss=float(winner.value),
                loss_std=winner.user_attrs.get("loss_std"),
                rounds=int(winner.user_attrs["rounds"]),
                duration_s=float(winner.user_attrs.get("duration_s", 0.0)),
                status="ok",
            )
        finally:
            study.close()

    def _refit(
        self, params: dict[str, Any], winner: CVResult
    ) -> tuple[lgb.Booster, np.ndarray, np.ndarray, dict[str, float]]:
        data, threads = self.data, self.settings.train_threads
        if self.settings.dask_scheduler:
            booster = self._fit_on_cluster(params, winner)
        else:
            booster = fit_final(
                data.features,
                data.labels,
                data.pipeline.categorical_features,
                self.space,
                params,
                winner.rounds,
                threads=threads,
                seed=self.settings.seed,
                feature_names=data.pipeline.feature_names,
                rules=self.rules,
                max_boost_rounds=self.settings.max_boost_rounds,
            )
        test = data.dataset.test
        labels = test["label"].to_numpy()
        probabilities = booster.predict(data.pipeline.transform(test), num_threads=threads)
        test_metrics = self.rules.metrics(labels, probabilities)
        shown = ", ".join(
            f"{name.replace('_', ' ')} {test_metrics[name]:.4f}"
            for name in (self.rules.loss, *self.rules.report)
        )
        self.say(
            f"refit: {booster.current_iteration()} boosting rounds ({winner.rounds} in CV); "
            f"{data.dataset.name} test rows: {shown}"
        )
        metrics = {
            **test_metrics,
            "cv_loss": float(winner.loss),
            "cv_loss_std": float(winner.loss_std or 0.0),
        }
        return booster, labels, probabilities, metrics

    def _fit_on_cluster(self, params: dict[str, Any], winner: CVResult) -> lgb.Booster:
        """The refit by ``lightgbm.dask`` on the ``dask_scheduler``'s workers (dask_fit.py),
        for the same boosting rounds as the single-process refit (no early stopping there)."""
        from . import dask_fit

        settings, data = self.settings, self.data
        full, _cap = lightgbm_params(
            self.space,
            params,
            threads=settings.train_threads,
            seed=settings.seed,
            feature_names=data.pipeline.feature_names,
            task=self.rules.lightgbm_params(),
        )
        rounds = refit_rounds(winner.rounds, max_boost_rounds=settings.max_boost_rounds)
        try:
            client = dask_fit.connect(settings.dask_scheduler)
        except dask_fit.DaskFitError as exc:
            raise TrainingError(f"round {self.round_id}: {exc}") from exc
        try:
            workers = max(1, len(client.scheduler_info()["workers"]))
            self.say(f"refit on the Dask cluster {settings.dask_scheduler} ({workers} workers)")
            window = dask_fit.scattered_matrix(client, data.features, data.labels, workers)
            return dask_fit.fit(
                client,
                window,
                data.pipeline,
                full,
                rounds,
                timeout_s=settings.dask_timeout_seconds,
            )
        except dask_fit.DaskFitError as exc:
            raise TrainingError(f"round {self.round_id}: {exc}") from exc
        finally:
            client.close()

    def _bundle(
        self,
        booster: lgb.Booster,
        params: dict[str, Any],
        winner: CVResult,
        metrics: dict[str, float],
        optimizer: str,
    ) -> ModelBundle:
        manifest = {
            "metrics": dict(metrics),
            "data_rows": self.data.rows,
            "data_hash": self.data.data_hash,
            "params": params,
            "best_iteration": winner.rounds,
            "trigger": self.trigger,
            "optimizer": optimizer,
            "round_id": self.round_id,
            "space_hash": self.space.hash,
            "dropped_features": list(self.data.dropped),
            "drop_drifting_features": self.settings.drop_drifting_features,
            "max_boost_rounds": self.settings.max_boost_rounds,
            "mlflow_run_id": self.run_id,
        }
        return ModelBundle(booster, self.data.pipeline, manifest)

    def _publish(
        self, bundle: ModelBundle, labels: np.ndarray, probabilities: np.ndarray
    ) -> int | None:
        """Artifacts, the bundle registered as a model (logged once, tagged with its SHA-256)
        and the ``challenger`` alias; the registry version, or None without a registry."""
        tracker = self.tracker
        if tracker.wants_artifacts and self.rules.name == "binary":  # ROC and calibration
            from .artifacts import write_round_artifacts

            with tempfile.TemporaryDirectory(prefix="streamfit-artifacts-") as scratch:
                with tracker.timing("plots"):
                    write_round_artifacts(
                        Path(scratch),
                        self.trials.trials(self.round_id),
                        self.space,
                        labels,
                        probabilities,
                    )
                tracker.log_artifacts(Path(scratch))
        if tracker.registry is None:
            return None
        test = self.data.dataset.test
        example = test[list(bundle.contract.features)].head(5).reset_index(drop=True)
        output = bundle.predict_matrix(bundle.pipeline.transform(example))
        with tempfile.TemporaryDirectory(prefix="streamfit-bundle-") as scratch:
            # The registered files carry no version: the registry gives it (registry.py).
            bundle.save(Path(scratch))
            registry_version = tracker.log_model(Path(scratch), example, output)
            digest = bundle_sha256(Path(scratch))
        if registry_version is not None:
            tracker.set_alias("challenger", registry_version)
            bundle.manifest.update(registry_version=registry_version, sha256=digest)
        return registry_version

    def _gate(
        self,
        bundle: ModelBundle,
        version: int,
        registry_version: int | None,
        metrics: Mapping[str, float],
    ) -> GateDecision:
        decision = decide(bundle, self.store, self.data.holdout, self.settings.gate_tolerance)
        if (
            decision.promoted
            and self.settings.promotion in ("shadow", "canary")
            and decision.champion_version is not None
            and registry_version is not None
        ):
            # Shadow or canary mode: the gate's winner proves itself on live traffic (live.py).
            from ..challengers.live import shadow_after_gate

            reason = shadow_after_gate(
                self.settings,
                registry_version,
                decision.reason,
                producer=self.producer,
                registry=self.tracker.registry,
            )
            decision = dataclasses.replace(decision, promoted=False, reason=reason)
        if decision.promoted:
            self.trials.record_champion(version, decision.reason)
            if registry_version is not None:
                with self.tracker.timing("promote"):
                    promotion.promote(
                        self.settings,
                        registry_version,
                        event="initial" if self.trigger == "initial" else "promoted",
                        reason=decision.reason,
                        producer=self.producer,
                        registry=self.tracker.registry,
                        metrics=dict(metrics),
                        trigger=self.trigger,
                    )
            else:  # no registry (a null tracker): nothing to fetch, the local pointer only
                self.store.set_champion(version)
        self.say(f"gate: v{version} {decision.reason}")
        return decision

    def _log_round(
        self,
        params: dict[str, Any],
        winner: CVResult,
        metrics: dict[str, float],
        decision: GateDecision,
        version: int,
        registry_version: int | None,
    ) -> None:
        loss = self.rules.loss
        logged = {
            f"best_cv_{loss}": metrics["cv_loss"],
            **{f"test_{name}": metrics[name] for name in (loss, *self.rules.report)},
            f"holdout_{loss}": metrics[f"holdout_{loss}"],
            "best_iteration": winner.rounds,
            "n_trials": self.max_evals,
        }
        if f"champion_holdout_{loss}" in metrics:
            logged[f"champion_holdout_{loss}"] = metrics[f"champion_holdout_{loss}"]
        self.tracker.describe_round(self._description(decision, version))
        self.tracker.log_round(
            params=params,
            metrics=logged,
            tags={
                "gate": "promoted" if decision.promoted else "refused",
                "gate_reason": decision.reason,
                "compared_with": str(decision.champion_version),
                "model_version": str(version),
                "registry_version": str(registry_version),
            },
        )

    def _triggered_by(self) -> str:
        """What started the round, in words (the first line of its MLflow description)."""
        data = self.data
        why = {
            "initial": "the initial training (`streamfit init` or the demo): no champion yet",
            "retrain": "a retrain command: the recorder asks for one every "
            f"{self.settings.retrain_every} labelled observations",
            "manual": "a manual round (`streamfit init --force`)",
            "drift": "a drift alarm from the monitor (a drift event with drifted=true)",
        }[self.trigger]
        return (
            f"**Round {self.round_id}**, triggered by {why}. Trained on {data.rows} rows "
            f"({data.observed_train} observed), {self.max_evals} trials."
        )

    def _description(self, decision: GateDecision, version: int) -> str:
        """The round's MLflow description: its trigger and the gate's decision."""
        verdict = "promoted" if decision.promoted else "refused"
        text = f"{self._triggered_by()}\n\n**Gate: v{version} {verdict}**: {decision.reason}."
        if decision.champion is not None:
            loss = self.rules.loss
            text += (
                f" Holdout {loss.replace('_', ' ')} {decision.challenger[loss]:.4f} against "
                f"champion v{decision.champion_version}'s {decision.champion[loss]:.4f} "
                f"({decision.holdout_rows} rows, tolerance {self.settings.gate_tolerance})."
            )
        return text


def _objective(settings: Settings, data: _RoundData, space: SearchSpace) -> CVObjective:
    return CVObjective(
        data.features,
        data.labels,
        data.pipeline.categorical_features,
        space,
        threads=settings.train_threads,
        seed=settings.seed,
        feature_names=data.pipeline.feature_names,
        rules=task_of(data.dataset.contract),
        max_boost_rounds=settings.max_boost_rounds,
    )


def join_search(
    settings: Settings,
    announcement: Announcement,
    *,
    new_observations: pd.DataFrame | None = None,
    base_data: pd.DataFrame | None = None,
    tracker: Tracker | None = None,
    progress: Progress | Callable[[str], None] | None = None,
    running: Callable[[], bool] = lambda: True,
) -> int:
    """Run trials of another trainer's round (its announced study) until its budget is spent;
    the number of trials run here. Refused (0, logged) when this trainer's training rows differ
    from the leader's: its trials would score other data."""
    say = as_progress(progress)
    with threadpool_limits(limits=settings.train_threads):
        data = _RoundData.build(
            settings, base_data, new_observations, dropped=list(announcement.dropped)
        )
        if announcement.space_hash != DEFAULT_SPACE.hash:
            log.warning("not joining study %s: another search space", announcement.study)
            return 0
        if data.data_hash != announcement.data_hash:
            log.warning(
                "not joining study %s: %d training rows here (hash %s), %d at its leader (%s)",
                announcement.study,
                data.rows,
                data.data_hash,
                announcement.data_rows,
                announcement.data_hash,
            )
            return 0
        timed = TimedTracker(tracker if tracker is not None else get_tracker(settings))
        timed.join_round(announcement.run_id)
        trials = TrialStore(settings.trials_url)
        study = SharedStudy(settings, announcement.study, announcement.budget, create=False)
        try:
            say.note(f"joining round {announcement.round_id}'s search ({announcement.study})")
            evaluate = SharedTrial(
                _objective(settings, data, DEFAULT_SPACE),
                trials,
                timed,
                announcement.round_id,
                data.rows,
                data.data_hash,
                DEFAULT_SPACE,
                study,
                say,
                settings.pruning,
                loss=task_of(data.dataset.contract).loss,
            )
            ran = study.work(evaluate, running=running)
        finally:
            study.close()
            trials.close()
    say.note(f"round {announcement.round_id}'s search done: {ran} trial(s) run here")
    return ran


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
        with contextlib.suppress(KeyError, TypeError, ValueError):
            points.append(space.snap(candidate))
    return points


def _sync_champion(settings: Settings, tracker: Tracker) -> None:
    """Bring the registry's champion into this data directory's bundle store (fetched and
    verified when missing) and point the local pointer at it: the gate and the warm start read
    it there, and ``promote``/``rollback`` may have moved it from another machine."""
    registry = tracker.registry
    if registry is None:
        return
    try:
        champion = registry.champion()
        if champion is None:
            return
        store = ModelStore(settings.models_dir, settings.keep_models)
        if not store.path(champion.version).is_dir():  # our own bundles are stored under it
            registry.fetch(champion, store.root)  # lands in store.path(version), verified
        if store.champion() != champion.version:
            store.set_champion(champion.version)
    except Exception as exc:  # the gate then compares with the local champion, if any
        log.warning("could not bring the registry's champion into %s: %s", settings.models_dir, exc)


def _concat(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    # Skipping empty frames keeps pandas from warning about all-NA columns changing dtypes.
    return pd.concat([f for f in (first, second) if len(f)] or [first], ignore_index=True)


__all__ = ["TRIGGERS", "RoundOutcome", "TrainingError", "join_search", "run_round"]

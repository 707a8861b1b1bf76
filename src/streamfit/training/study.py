"""One search shared by every trainer: a round's Optuna study in the trial store's PostgreSQL.

On with ``--optimizer optuna`` and a PostgreSQL ``--trials`` URL (SQLite is not for parallel
workers); otherwise a round searches alone, as before. The trainer that takes the retrain command
(the leader) creates the round's study, enqueues the warm-start points and announces the study
on the ``search`` topic; every other trainer of the group loads it and runs trials until the
round's budget is spent. The leader then refits, gates and promotes, once.

- **Exactly the budget.** A trial counts once it has claimed a slot: under a PostgreSQL advisory
  lock, a worker claims one only while finished plus running claimed trials are below the
  budget (``MaxTrialsCallback`` counts after the fact, so K workers could overshoot by K - 1).
  A trial that finds no slot is pruned unclaimed and counts for nothing.
- **Crash safety.** Trials beat a heartbeat every ``HEARTBEAT_S``; one silent for ``GRACE_S``
  (its worker died) is marked failed by the next worker that asks for a trial, and a copy of it
  is enqueued (``RetryHeartbeatStaleTrialCallback``), so its slot is run again. A worker whose
  remaining slots are all held by running trials waits and looks for stale ones meanwhile.
- **Spread.** TPE with ``constant_liar`` and a seed per worker.

Optuna's tables live in a schema of their own beside the trial store's (both have a ``trials``
table): ``optuna`` or ``<search_path>_optuna``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from ..config import Settings
    from ..ops.progress import Progress
    from ..tracking import Tracker
    from .objective import CVObjective
    from .space import SearchSpace
    from .trials import TrialStore

HEARTBEAT_S = 10  # Optuna warns that very short intervals have crashed workers
GRACE_S = 40  # a trial silent this long belongs to a dead worker
MAX_RETRY = 2  # copies of one failed trial
_WAIT_S = 1.0
# This process, as a worker of a study: trainers on one host have different pids.
WORKER = f"{socket.gethostname()}-{os.getpid()}"
STATUS = "status"  # user attr: ok | pruned | failed (the objective's own outcome)
CLAIM = "claim"  # user attr: the number of the trial that claimed a slot (copies inherit attrs)


def is_shared(settings: Settings) -> bool:
    """Whether this trainer's rounds share their search (see the module docstring)."""
    return settings.optimizer == "optuna" and settings.trials.startswith("postgresql")


class _FailedTrial(Exception):
    """The objective's own failure (a LightGBM error): the trial counts, as failed."""


@dataclass(frozen=True)
class Announcement:
    """What the leader says on the ``search`` topic: enough for a trainer to join."""

    study: str
    round_id: int
    budget: int
    data_rows: int
    data_hash: str
    space_hash: str
    leader: str = WORKER
    run_id: str | None = None
    dropped: list[str] = field(default_factory=list)
    # The leader's newest labelled observation: a joining trainer reads the store up to it.
    labelled_upto: float | None = None

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, value: bytes) -> Announcement:
        """Raises ValueError on anything that is not an announcement."""
        try:
            return cls(**json.loads(value))
        except (TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a search announcement: {exc}") from exc


def optuna_url(trials_url: str) -> str:
    """The URL of Optuna's schema beside the trial store (created when missing)."""
    url = sa.engine.make_url(trials_url)
    options = url.query.get("options", "")
    options = options if isinstance(options, str) else " ".join(options)
    path = "public"
    kept = []
    for option in options.split():
        if option.startswith("-csearch_path="):
            path = option.split("=", 1)[1].split(",")[0]
        else:
            kept.append(option)
    schema = "optuna" if path == "public" else f"{path}_optuna"
    engine = sa.create_engine(trials_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as db:
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(schema)})
            db.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()
    options = " ".join([*kept, f"-csearch_path={schema}"])
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


class SharedStudy:
    """One round's study, as seen by one worker (leader or not)."""

    def __init__(self, settings: Settings, name: str, budget: int, *, create: bool) -> None:
        import optuna
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        from .optimizers._optuna import make_pruner, make_sampler

        if budget < 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.name = name
        self.budget = budget
        with warnings.catch_warnings():  # heartbeats and retries are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
            self.storage = RDBStorage(
                optuna_url(settings.trials_url),
                engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry,
            )
        # The leader's sampler is reproducible from the settings' seed; each joining worker's
        # differs from it and from the others'.
        who = name if create else f"{name}/{WORKER}"
        seed = settings.seed + zlib.crc32(who.encode()) % 100_000
        kwargs: dict[str, Any] = {
            "study_name": name,
            "storage": self.storage,
            "sampler": make_sampler(seed, n_startup=5),
            "pruner": make_pruner(settings.pruning, n_startup=5),
        }
        if create:
            self.study = optuna.create_study(direction="minimize", **kwargs)
        else:
            self.study = optuna.load_study(**kwargs)
        self._lock = sa.create_engine(settings.trials_url, poolclass=sa.pool.NullPool)

    def enqueue(self, points: Iterable[Mapping[str, Any]]) -> None:
        """Warm-start points, run first by whichever workers ask first."""
        for point in points:
            self.study.enqueue_trial(dict(point), skip_if_exists=True)

    def trials(self) -> list[FrozenTrial]:
        """Every claimed trial: the round's, whoever ran it."""
        return [
            t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get(CLAIM) == t.number
        ]

    def counts(self) -> tuple[int, int]:
        """(finished, running) claimed trials; a trial failed by its heartbeat counts for
        neither (its copy runs again)."""
        from optuna.trial import TrialState

        finished = running = 0
        for trial in self.trials():
            if trial.state == TrialState.RUNNING:
                running += 1
            elif (
                trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
                or trial.user_attrs.get(STATUS) == "failed"  # not failed by its heartbeat
            ):
                finished += 1
        return finished, running

    def is_warm(self, number: int) -> bool:
        """Whether trial ``number`` is an enqueued warm-start point (not a retried copy)."""
        for trial in self.study.get_trials(deepcopy=False):
            if trial.number == number:
                attrs = trial.system_attrs
                return "fixed_params" in attrs and "failed_trial" not in attrs
        return False

    def best(self) -> FrozenTrial | None:
        from optuna.trial import TrialState

        done = [t for t in self.trials() if t.state == TrialState.COMPLETE]
        return min(done, key=lambda t: (t.value, t.number)) if done else None

    def work(
        self,
        evaluate: Callable[[optuna.Trial], float],
        *,
        running: Callable[[], bool] = lambda: True,
    ) -> int:
        """Run trials until the budget is spent (or ``running()`` says stop); the number this
        worker ran. ``evaluate`` scores a claimed trial: it returns the loss, raises
        ``optuna.TrialPruned``, or sets ``STATUS`` to failed and raises (see
        :class:`SharedTrial`)."""
        import optuna

        claimed: list[int] = []

        def objective(trial: optuna.Trial) -> float:
            if not self._claim(trial):
                self.study.stop()
                raise optuna.TrialPruned("the round's budget is spent")
            claimed.append(trial.number)
            return evaluate(trial)

        while running():
            finished, busy = self.counts()
            if finished >= self.budget:
                break
            if finished + busy >= self.budget:
                # Every slot left is held by a running trial: wait for it, and fail it (then
                # run its copy) if its worker died.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(self.study)
                time.sleep(_WAIT_S)
                continue
            self.study.optimize(objective, n_trials=1, catch=(_FailedTrial,))
        return len(claimed)

    def _claim(self, trial: optuna.Trial) -> bool:
        with self._lock.begin() as db:
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(self.name)})
            finished, busy = self.counts()
            # This trial is running but not yet claimed: it is not among the busy ones.
            if finished + busy >= self.budget:
                return False
            trial.set_user_attr(CLAIM, trial.number)
            trial.set_user_attr("worker", WORKER)
        return True

    def close(self) -> None:
        self._lock.dispose()
        self.storage.engine.dispose()


class SharedTrial:
    """Scores one claimed trial of a shared study (its ``evaluate``) and records it as every
    trial is recorded (trial store, a child run of the round's MLflow run): the same for the
    leader and a joining trainer."""

    def __init__(
        self,
        objective: CVObjective,
        store: TrialStore,
        tracker: Tracker,
        round_id: int,
        data_rows: int,
        data_hash: str,
        space: SearchSpace,
        study: SharedStudy,
        progress: Progress,
        pruning: bool,
        *,
        loss: str = "log_loss",
    ) -> None:
        self.objective = objective
        self.loss = loss  # the task's loss, for the progress line
        self.store = store
        self.tracker = tracker
        self.round_id = round_id
        self.data_rows = data_rows
        self.data_hash = data_hash
        self.space = space
        self.study = study
        self.progress = progress
        self.pruning = pruning

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from .objective import TrialPruned
        from .optimizers._optuna import PruningCallback, suggest
        from .trials import record_trial, trial_line

        params = self.space.snap(suggest(trial, self.space))
        result = self.objective(params, [PruningCallback(trial)] if self.pruning else [])
        warm = self.study.is_warm(trial.number)
        record_trial(
            self.store,
            self.tracker,
            self.round_id,
            trial.number,
            params,
            result,
            optimizer="optuna",
            warm=warm,
            data_rows=self.data_rows,
            data_hash=self.data_hash,
            space_hash=self.space.hash,
            loss=self.loss,
        )
        trial.set_user_attr("rounds", result.rounds)
        trial.set_user_attr("duration_s", result.duration_s)
        if result.loss_std is not None:
            trial.set_user_attr("loss_std", result.loss_std)
        finished, _running = self.study.counts()
        best = self.study.best()
        budget = self.study.budget
        best_loss = best.value if best else None
        line = trial_line(trial.number, budget, warm, result, best_loss, self.loss)
        self.progress.update("trials", min(finished + 1, budget), budget, line)
        if result.status == "pruned":
            trial.set_user_attr(STATUS, "pruned")
            raise optuna.TrialPruned(str(TrialPruned(result.loss, result.rounds)))
        if result.status == "failed" or result.loss is None:
            trial.set_user_attr(STATUS, "failed")
            raise _FailedTrial(result.error or "failed")
        trial.set_user_attr(STATUS, "ok")
        return float(result.loss)


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


__all__ = ["WORKER", "Announcement", "SharedStudy", "SharedTrial", "is_shared", "optuna_url"]

"""Every trial of every round, kept in one SQLAlchemy database (SQLite by default).

Three tables: ``rounds`` (one row per training round; its id is the round id everywhere; the
gate's decision with its reason and the champion it compared with), ``trials`` (one row per
evaluated parameter set) and ``champions`` (promotion history, used by rollback). Any SQLAlchemy
URL works, e.g. ``postgresql+psycopg://...`` for several trainers.

>>> store = TrialStore("sqlite://")
>>> rid = store.begin_round(trigger="manual", optimizer="hyperopt", data_rows=10,
...                         data_hash="abc", space_hash="s1")
>>> _ = store.add_trial(rid, 0, {"a": 1}, loss=0.3, loss_std=0.01, rounds=42, duration_s=1.0,
...                     status="ok", optimizer="hyperopt", data_rows=10, data_hash="abc",
...                     space_hash="s1")
>>> [(r["round_id"], r["cv_loss"], r["rounds"]) for r in store.leaderboard()]
[(1, 0.3, 42)]
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from ..ops.table import aligned
from ..stores import add_columns, create_schema, make_engine, rename_columns
from .gate import REFUSED
from .space import params_key

if TYPE_CHECKING:
    from ..config import Settings
    from ..tracking import Tracker
    from .objective import CVResult

_metadata = sa.MetaData()

rounds_table = sa.Table(
    "rounds",
    _metadata,
    sa.Column("round_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("optimizer", sa.String(32), nullable=False),
    sa.Column("data_rows", sa.Integer, nullable=False),
    sa.Column("data_hash", sa.String(64), nullable=False),
    sa.Column("space_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="running"),
    sa.Column("model_version", sa.Integer),
    sa.Column("promoted", sa.Boolean),
    sa.Column("mlflow_run_id", sa.String(64)),
    sa.Column("gate_reason", sa.Text),  # as the trainer logs it: "gate: vN <reason>"
    sa.Column("compared_with", sa.Integer),  # the champion's version the gate compared with
)
_ADDED_ROUND_COLUMNS = ("gate_reason", "compared_with")  # added on open to older databases

trials_table = sa.Table(
    "trials",
    _metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.round_id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),  # position within the round, from 0
    sa.Column("optimizer", sa.String(32), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("params_key", sa.Text, nullable=False),  # canonical JSON, for de-duplication
    sa.Column("cv_loss", sa.Float),  # the task's CV loss: log loss, or RMSE for regression
    sa.Column("cv_loss_std", sa.Float),
    sa.Column("rounds", sa.Integer, nullable=False),  # boosting rounds reached
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ok | pruned | failed
    sa.Column("warm", sa.Boolean, nullable=False, default=False),
    sa.Column("data_rows", sa.Integer, nullable=False),
    sa.Column("data_hash", sa.String(64), nullable=False),
    sa.Column("space_hash", sa.String(64), nullable=False, index=True),
    sa.Column("created", sa.Float, nullable=False),
)
# renamed on open in older databases, whose names said log loss whatever the task
_RENAMED_TRIAL_COLUMNS = {"cv_logloss": "cv_loss", "cv_logloss_std": "cv_loss_std"}

champions_table = sa.Table(
    "champions",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("rolled_back", sa.Boolean, nullable=False, default=False),
)

LEADERBOARD_COLUMNS = (
    "round_id",
    "number",
    "optimizer",
    "cv_loss",
    "cv_loss_std",
    "rounds",
    "duration_s",
    "status",
    "warm",
    "data_rows",
    "params",
)


class TrialStore:
    """Thin data-access object over the three tables; creates them on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        # SQLite: WAL and a busy timeout (the CLI may read while the trainer writes);
        # PostgreSQL: tables created under a lock (trainers may start together).
        self.engine = make_engine(url)
        create_schema(self.engine, _metadata)
        add_columns(self.engine, rounds_table, _ADDED_ROUND_COLUMNS)
        rename_columns(self.engine, trials_table, _RENAMED_TRIAL_COLUMNS)

    # -- rounds ---------------------------------------------------------------------------------
    def begin_round(
        self, *, trigger: str, optimizer: str, data_rows: int, data_hash: str, space_hash: str
    ) -> int:
        with self.engine.begin() as db:
            result = db.execute(
                rounds_table.insert().values(
                    started=time.time(),
                    trigger=trigger,
                    optimizer=optimizer,
                    data_rows=data_rows,
                    data_hash=data_hash,
                    space_hash=space_hash,
                    status="running",
                )
            )
            return int(result.inserted_primary_key[0])

    def finish_round(self, round_id: int, status: str, **values: Any) -> None:
        with self.engine.begin() as db:
            db.execute(
                rounds_table.update()
                .where(rounds_table.c.round_id == round_id)
                .values(finished=time.time(), status=status, **values)
            )

    def rounds(self) -> list[dict[str, Any]]:
        with self.engine.connect() as db:
            rows = db.execute(rounds_table.select().order_by(rounds_table.c.round_id))
            return [dict(r._mapping) for r in rows]

    def refused(self) -> list[dict[str, Any]]:
        """The rounds whose challenger the gate refused, oldest first (rounds recorded before
        the store kept the gate's reason are not among them)."""
        r = rounds_table.c
        query = (
            rounds_table.select()
            .where(r.promoted.is_(False), r.gate_reason.startswith(REFUSED, autoescape=True))
            .order_by(r.round_id)
        )
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    # -- trials ---------------------------------------------------------------------------------
    def add_trial(
        self,
        round_id: int,
        number: int,
        params: Mapping[str, Any],
        *,
        loss: float | None,
        loss_std: float | None,
        rounds: int,
        duration_s: float,
        status: str,
        optimizer: str,
        data_rows: int,
        data_hash: str,
        space_hash: str,
        warm: bool = False,
    ) -> int:
        with self.engine.begin() as db:
            result = db.execute(
                trials_table.insert().values(
                    round_id=round_id,
                    number=number,
                    optimizer=optimizer,
                    params=json.dumps(dict(params)),
                    params_key=params_key(params),
                    cv_loss=loss,
                    cv_loss_std=loss_std,
                    rounds=rounds,
                    duration_s=duration_s,
                    status=status,
                    warm=warm,
                    data_rows=data_rows,
                    data_hash=data_hash,
                    space_hash=space_hash,
                    created=time.time(),
                )
            )
            return int(result.inserted_primary_key[0])

    def trials(self, round_id: int | None = None) -> list[dict[str, Any]]:
        """Trials in the order they ran (params decoded)."""
        query = trials_table.select().order_by(trials_table.c.trial_id)
        if round_id is not None:
            query = query.where(trials_table.c.round_id == round_id)
        with self.engine.connect() as db:
            return [_decode(r._mapping) for r in db.execute(query)]

    def leaderboard(
        self,
        round_id: int | None = None,
        optimizer: str | None = None,
        limit: int | None = 10,
        space_hash: str | None = None,
    ) -> list[dict[str, Any]]:
        """Best completed trials (lowest CV loss first: log loss, or RMSE for regression)."""
        t = trials_table
        query = (
            t.select()
            .where(t.c.status == "ok", t.c.cv_loss.is_not(None))
            .order_by(t.c.cv_loss, t.c.trial_id)
        )
        if round_id is not None:
            query = query.where(t.c.round_id == round_id)
        if optimizer is not None:
            query = query.where(t.c.optimizer == optimizer)
        if space_hash is not None:
            query = query.where(t.c.space_hash == space_hash)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as db:
            return [_decode(r._mapping) for r in db.execute(query)]

    def warm_start_points(
        self, space_hash: str, k: int, exclude: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """The best ``k`` distinct parameter sets of earlier rounds in the same search space.

        ``exclude`` holds :func:`params_key` values already queued (the champion's).
        """
        seen = set(exclude)
        points: list[dict[str, Any]] = []
        t = trials_table
        query = (
            sa.select(t.c.params, t.c.params_key)
            .where(t.c.status == "ok", t.c.space_hash == space_hash, t.c.cv_loss.is_not(None))
            .order_by(t.c.cv_loss, t.c.trial_id)
        )
        with self.engine.connect() as db:
            for params, key in db.execute(query):
                if len(points) >= k:
                    break
                if key not in seen:
                    seen.add(key)
                    points.append(json.loads(params))
        return points

    # -- champion history -----------------------------------------------------------------------
    def record_champion(self, version: int, reason: str) -> None:
        with self.engine.begin() as db:
            db.execute(
                champions_table.insert().values(
                    version=version, since=time.time(), reason=reason, rolled_back=False
                )
            )

    def champion_history(self) -> list[dict[str, Any]]:
        """Promotions still in force, oldest first (rolled-back ones left out)."""
        c = champions_table
        with self.engine.connect() as db:
            rows = db.execute(c.select().where(c.c.rolled_back.is_(False)).order_by(c.c.id))
            return [dict(r._mapping) for r in rows]

    def mark_rolled_back(self, version: int) -> None:
        """Retire every in-force promotion of ``version`` (so rollback never returns to it)."""
        c = champions_table
        with self.engine.begin() as db:
            db.execute(
                c.update()
                .where(c.c.version == version, c.c.rolled_back.is_(False))
                .values(rolled_back=True)
            )

    def close(self) -> None:
        self.engine.dispose()


def _decode(row: Mapping[str, Any]) -> dict[str, Any]:
    record = dict(row)
    record["params"] = json.loads(record["params"])
    record["warm"] = bool(record["warm"])
    return record


def format_leaderboard(rows: Sequence[Mapping[str, Any]], fmt: str = "table") -> str:
    """Render leaderboard rows as an aligned table, CSV or JSON."""
    if fmt not in ("table", "csv", "json"):
        raise ValueError(f"format must be table, csv or json, got {fmt!r}")
    records = [{name: row.get(name) for name in LEADERBOARD_COLUMNS} for row in rows]
    if fmt == "json":
        return json.dumps(records, indent=2)
    flat = [{**r, "params": json.dumps(r["params"], sort_keys=True)} for r in records]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=LEADERBOARD_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return out.getvalue()
    if not flat:
        return "no trials recorded"
    shown = [c for c in LEADERBOARD_COLUMNS if c not in ("params", "cv_loss_std")]
    table = aligned([shown, *([_cell(r[c]) for c in shown] for r in flat)])
    return f"{table}\nparams of the best: {flat[0]['params']}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5f}" if value < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def leaderboard_command(
    settings: Settings,
    round_id: int | None = None,
    optimizer: str | None = None,
    limit: int = 10,
    fmt: str = "table",
) -> str:
    """Text for ``streamfit leaderboard``: the best trials in the settings' trial store."""
    store = TrialStore(settings.trials_url)
    try:
        return format_leaderboard(store.leaderboard(round_id, optimizer, limit), fmt)
    finally:
        store.close()


def record_trial(
    store: TrialStore,
    tracker: Tracker,
    round_id: int,
    number: int,
    params: Mapping[str, Any],
    result: CVResult,
    *,
    optimizer: str,
    warm: bool,
    data_rows: int,
    data_hash: str,
    space_hash: str,
    loss: str,
) -> None:
    """One trial into the trial store and, as a child run of the round, the tracker (its
    metrics ``cv_<loss>``, ``loss`` the task's: ``log_loss`` or ``rmse``)."""
    store.add_trial(
        round_id,
        number,
        params,
        loss=result.loss,
        loss_std=result.loss_std,
        rounds=result.rounds,
        duration_s=result.duration_s,
        status=result.status,
        optimizer=optimizer,
        data_rows=data_rows,
        data_hash=data_hash,
        space_hash=space_hash,
        warm=warm,
    )
    metrics = {
        f"cv_{loss}": result.loss,
        f"cv_{loss}_std": result.loss_std,
        "rounds": result.rounds,
        "duration_s": result.duration_s,
        "pruned": float(result.status == "pruned"),
    }
    tracker.log_trial(number, params, {k: v for k, v in metrics.items() if v is not None})


def trial_line(
    number: int,
    total: int,
    warm: bool,
    result: CVResult,
    best: float | None,
    loss: str = "log_loss",
) -> str:
    """A trial's progress line; ``best``: the round's best CV loss so far."""
    origin = " [warm start]" if warm else ""
    loss = "logloss" if loss == "log_loss" else loss
    best_text = "-" if best is None else f"{best:.4f}"
    if result.status == "ok":
        return (
            f"trial {number + 1}/{total}{origin}: cv {loss} {result.loss:.4f} "
            f"at {result.rounds} rounds (best {best_text})"
        )
    if result.status == "pruned":
        return f"trial {number + 1}/{total}{origin}: pruned at round {result.rounds}"
    return f"trial {number + 1}/{total}{origin}: failed ({result.error})"


def data_fingerprint(frame: pd.DataFrame) -> tuple[int, str]:
    """(rows, hash) of a training frame: content only, index ignored."""
    import hashlib

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return len(frame), hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


__all__ = [
    "LEADERBOARD_COLUMNS",
    "TrialStore",
    "data_fingerprint",
    "format_leaderboard",
    "leaderboard_command",
    "record_trial",
    "trial_line",
]

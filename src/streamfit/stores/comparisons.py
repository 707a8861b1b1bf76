"""Live comparisons: one row per challenger shadowed against a champion, running or decided.

Written by whoever starts a comparison (the trainer's gate in shadow mode, ``streamfit shadow``)
and by whoever decides it (any trainer: :meth:`ComparisonStore.finish` only changes a running
comparison, so of several trainers deciding at once exactly one wins and acts). Read by
``streamfit experiments``. Kept in the observation store's database (its pairs live there).

>>> import tempfile
>>> comparisons = ComparisonStore(f"sqlite:///{tempfile.mkdtemp()}/o.db")
>>> started = comparisons.start("m", champion=1, challenger=2, policy="shadow", now=10.0)
>>> comparisons.running("m").challenger
2
>>> comparisons.finish(started.id, "reject", pairs=150, estimate=-0.2, lower=-0.3, upper=-0.1,
...                    reason="worse", now=70.0)
True
>>> comparisons.finish(started.id, "promote", pairs=151, estimate=0, lower=0, upper=0)
False
>>> [(c.decision, c.pairs, c.duration_s) for c in comparisons.list("m")]
[('reject', 150, 60.0)]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from ._sql import create_schema, make_engine, reading, writing

RUNNING = "running"

_metadata = sa.MetaData()
_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

comparisons_table = sa.Table(
    "live_comparisons",
    _metadata,
    sa.Column("id", _BigInt, primary_key=True, autoincrement=True),
    sa.Column("registered_model", sa.Text, nullable=False),
    sa.Column("champion_version", sa.BigInteger, nullable=False),
    sa.Column("challenger_version", sa.BigInteger, nullable=False),
    sa.Column("policy", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # running, promote, reject, keep...
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("decided_at", sa.Float),
    sa.Column("pairs", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("estimate", sa.Float),
    sa.Column("lower", sa.Float),
    sa.Column("upper", sa.Float),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
)
_c = comparisons_table.c


@dataclass(frozen=True)
class Comparison:
    id: int
    registered_model: str
    champion: int
    challenger: int
    policy: str
    decision: str
    started_at: float
    decided_at: float | None
    pairs: int
    estimate: float | None
    lower: float | None
    upper: float | None
    reason: str

    @property
    def duration_s(self) -> float | None:
        return None if self.decided_at is None else round(self.decided_at - self.started_at, 3)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


class ComparisonStore:
    """Live comparisons behind SQLAlchemy Core; creates its table on first use."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        create_schema(self.engine, _metadata)

    def start(
        self,
        registered_model: str,
        *,
        champion: int,
        challenger: int,
        policy: str,
        now: float | None = None,
    ) -> Comparison:
        with writing(self.engine) as db:
            new_id = db.execute(
                comparisons_table.insert().values(
                    registered_model=registered_model,
                    champion_version=champion,
                    challenger_version=challenger,
                    policy=policy,
                    decision=RUNNING,
                    started_at=time.time() if now is None else now,
                )
            ).inserted_primary_key[0]
        found = self.get(int(new_id))
        assert found is not None
        return found

    def finish(
        self,
        comparison_id: int,
        decision: str,
        *,
        pairs: int,
        estimate: float,
        lower: float,
        upper: float,
        reason: str = "",
        now: float | None = None,
    ) -> bool:
        """Record the decision of a running comparison; False if it was decided already."""
        with writing(self.engine) as db:
            changed = db.execute(
                comparisons_table.update()
                .where(_c.id == comparison_id, _c.decision == RUNNING)
                .values(
                    decision=decision,
                    decided_at=time.time() if now is None else now,
                    pairs=pairs,
                    estimate=estimate,
                    lower=lower,
                    upper=upper,
                    reason=reason,
                )
            ).rowcount
        return changed == 1

    def progress(
        self, comparison_id: int, *, pairs: int, estimate: float, lower: float, upper: float
    ) -> None:
        """Where a running comparison stands (shown by ``streamfit experiments``)."""
        with writing(self.engine) as db:
            db.execute(
                comparisons_table.update()
                .where(_c.id == comparison_id, _c.decision == RUNNING)
                .values(pairs=pairs, estimate=estimate, lower=lower, upper=upper)
            )

    def get(self, comparison_id: int) -> Comparison | None:
        with reading(self.engine) as db:
            row = db.execute(sa.select(comparisons_table).where(_c.id == comparison_id)).first()
        return None if row is None else _comparison(row)

    def running(self, registered_model: str) -> Comparison | None:
        """The running comparison of ``registered_model`` (the newest, should there be two)."""
        with reading(self.engine) as db:
            row = db.execute(
                sa.select(comparisons_table)
                .where(_c.registered_model == registered_model, _c.decision == RUNNING)
                .order_by(_c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else _comparison(row)

    def list(self, registered_model: str | None = None) -> list[Comparison]:
        """Every comparison, oldest first."""
        query = sa.select(comparisons_table).order_by(_c.id)
        if registered_model is not None:
            query = query.where(_c.registered_model == registered_model)
        with reading(self.engine) as db:
            return [_comparison(row) for row in db.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


def _comparison(row: Any) -> Comparison:
    m = row._mapping
    return Comparison(
        id=int(m["id"]),
        registered_model=m["registered_model"],
        champion=int(m["champion_version"]),
        challenger=int(m["challenger_version"]),
        policy=m["policy"],
        decision=m["decision"],
        started_at=float(m["started_at"]),
        decided_at=m["decided_at"],
        pairs=int(m["pairs"]),
        estimate=m["estimate"],
        lower=m["lower"],
        upper=m["upper"],
        reason=m["reason"],
    )


__all__ = ["RUNNING", "Comparison", "ComparisonStore"]

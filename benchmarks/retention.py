"""Observation store with retention: what partitioning costs the writer, and what it buys the
readers, side by side in one run.

    python benchmarks/retention.py [--rows N] [--batch B]

On PostgreSQL (``scripts/postgres``, fresh schemas dropped afterwards) and SQLite, a store is
filled with ``--rows`` observations spread over 30 days, recorded as the recorder does (a batch
of requests, then their predictions, then their labels), and:

- ``record_vs_unpartitioned``: observations recorded per second into the partitioned table over
  the same into an unpartitioned one (the table an earlier streamfit made), same batches;
- ``window_ms``: the training window (newest 10,000 labelled), the monitor's recent rows and
  labelled outcomes (1,000 each), on the table after 10 days and after 30 days: their time
  does not grow with the table's age (``window_30d_vs_10d``);
- ``retain_ms``: one retention pass keeping 7 days (partitions dropped on PostgreSQL, small
  deletes on SQLite and on the unpartitioned table) and the rows it removed.

Prints a table and writes ``benchmarks/results/retention.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from streamfit import messages
from streamfit.config import Retention
from streamfit.stores import ObservationBatch, ObservationStore
from streamfit.stores.observations import observations_table

RESULTS = Path(__file__).parent / "results"
DAY = 86400.0
PG = "postgresql+psycopg://streamfit:streamfit@127.0.0.1:5432/streamfit"


def _batches(day: int, rows: int, batch: int) -> list[ObservationBatch]:
    out = []
    for start in range(0, rows, batch):
        ids = [f"d{day}-{i}" for i in range(start, min(start + batch, rows))]
        out.append(ObservationBatch(requests=[(i, messages.request(i, {"age": 40})) for i in ids]))
        out.append(ObservationBatch(predictions=[(i, 0.5, 1) for i in ids]))
        out.append(ObservationBatch(labels=[(i, 1) for i in ids]))
    return out


def _timed(work: Callable[[], Any], repeat: int = 5) -> float:
    """The median of ``repeat`` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return round(sorted(times)[len(times) // 2], 2)


def _windows(store: ObservationStore) -> dict[str, float]:
    return {
        "training_window": _timed(lambda: store.labelled_frame(limit=10_000), 3),
        "recent_frame": _timed(lambda: store.recent_frame(1000)),
        "labelled_outcomes": _timed(lambda: store.labelled_outcomes(1000)),
    }


def run(url: str, rows_per_day: int, batch: int, now: float) -> dict[str, Any]:
    store = ObservationStore(url)
    recorded_s = 0.0
    out: dict[str, Any] = {"partitioned": store.partitions is not None}
    for day in range(30):
        batches = _batches(day, rows_per_day, batch)
        at = now - (29 - day) * DAY
        start = time.perf_counter()
        for part in batches:
            store.record(part, now=at)
        recorded_s += time.perf_counter() - start
        if day == 9:
            _analyze(store)
            out["window_ms_10d"] = _windows(store)
    _analyze(store)
    out["window_ms_30d"] = _windows(store)
    out["record_per_s"] = round(30 * rows_per_day / recorded_s)
    rows, size = store.size()
    start = time.perf_counter()
    retained = store.retain(Retention(seconds=7 * DAY), now=now)
    out["retain_ms"] = round((time.perf_counter() - start) * 1000, 1)
    out["rows_before"], out["bytes_before"] = rows, size
    out["rows_after"], out["bytes_after"] = store.size()
    out["partitions_dropped"] = len(retained.partitions)
    store.close()
    return out


def _analyze(store: ObservationStore) -> None:
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as db:
            db.exec_driver_sql("ANALYZE observations")


def _unpartitioned(url: str) -> None:
    """An observation table as streamfit made it before partitioning."""
    engine = sa.create_engine(url)
    old = sa.MetaData()
    sa.Table("observations", old, *(c._copy() for c in observations_table.columns))
    for index in observations_table.indexes:
        sa.Index(
            index.name,
            *(old.tables["observations"].c[c.name] for c in index.columns),
            postgresql_where=index.dialect_options["postgresql"]["where"],
        )
    old.create_all(engine)
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=150_000, help="observations in 30 days")
    parser.add_argument("--batch", type=int, default=5000, help="messages per record()")
    parser.add_argument("--postgres", default=PG)
    parser.add_argument("--out", type=Path, default=RESULTS / "retention.json")
    args = parser.parse_args()
    per_day = max(args.rows // 30, 1)
    now = time.time()
    admin = sa.create_engine(args.postgres)
    results: dict[str, Any] = {"rows": per_day * 30, "batch": args.batch}
    schemas = []
    try:
        for name in ("postgresql-partitioned", "postgresql-unpartitioned"):
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            schemas.append(schema)
            with admin.begin() as db:
                db.exec_driver_sql(f"CREATE SCHEMA {schema}")
            url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            if name.endswith("unpartitioned"):
                _unpartitioned(url)
            print(f"{name}...", flush=True)
            results[name] = run(url, per_day, args.batch, now)
        with tempfile.TemporaryDirectory() as tmp:
            print("sqlite...", flush=True)
            results["sqlite"] = run(f"sqlite:///{tmp}/o.db", per_day, args.batch, now)
    finally:
        with admin.begin() as db:
            for schema in schemas:
                db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
    partitioned, plain = results["postgresql-partitioned"], results["postgresql-unpartitioned"]
    results["record_vs_unpartitioned"] = round(
        partitioned["record_per_s"] / plain["record_per_s"], 2
    )
    for name in ("postgresql-partitioned", "postgresql-unpartitioned", "sqlite"):
        run_ = results[name]
        run_["window_30d_vs_10d"] = {
            query: round(run_["window_ms_30d"][query] / max(run_["window_ms_10d"][query], 1e-3), 2)
            for query in run_["window_ms_30d"]
        }
    results["machine"] = (
        f"{os.cpu_count()} cores ({platform.machine()}), shared with other engineers' jobs; "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['rows']} observations over 30 days, batches of {results['batch']}",
        f"{'store':<26} {'rec/s':>8} {'train 10d':>10} {'30d':>7} {'recent 10d':>11} {'30d':>7} "
        f"{'retain ms':>10} {'rows before':>12} {'after':>7}",
    ]
    for name in ("postgresql-partitioned", "postgresql-unpartitioned", "sqlite"):
        r = results[name]
        lines.append(
            f"{name:<26} {r['record_per_s']:>8} {r['window_ms_10d']['training_window']:>10} "
            f"{r['window_ms_30d']['training_window']:>7} {r['window_ms_10d']['recent_frame']:>11} "
            f"{r['window_ms_30d']['recent_frame']:>7} {r['retain_ms']:>10} "
            f"{r['rows_before']:>12} {r['rows_after']:>7}"
        )
    lines.append(
        f"record_vs_unpartitioned (PostgreSQL): {results['record_vs_unpartitioned']}; "
        f"{results['machine']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

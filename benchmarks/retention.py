"""Observation store with retention: what partitioning costs the writer, and what it buys the
readers, side by side in one run.

    python benchmarks/retention.py [--rows N] [--batch B]

On PostgreSQL (``scripts/postgres``, fresh schemas dropped afterwards) and SQLite, a store is
filled with ``--rows`` observations spread over 30 days, recorded as the recorder does (a batch
of requests, then their predictions, then their labels), and:

each day followed by a retention pass keeping 7 days, as a recorder with ``--retain 7d`` does
(partitions dropped on PostgreSQL, small deletes on SQLite and on an unpartitioned table):

- ``record_vs_unpartitioned``: observations recorded per second into the partitioned table over
  the same into an unpartitioned one (the table an earlier streamfit made), same batches;
- rows and bytes held after 10 and after 30 days: flat once retention applies;
- ``window_ms``: the training window (newest 10,000 labelled), the monitor's recent rows and
  labelled outcomes (1,000 each) after 10 and after 30 days (``window_day30_vs_day10``);
- ``retain_pass_ms``: a retention pass, median and longest;
- ``partitions_sweep``: partitioned over unpartitioned writes with 1, 5, 12, 30 partitions held
  (each write probes every partition's request_id index once).

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
from streamfit.stores._retention import partition_seconds
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
    """30 days recorded as a recorder with ``retain 7d`` does: a retention pass after each
    day's batches (partitions as wide as that recorder makes them)."""
    keep = Retention(seconds=7 * DAY)
    store = ObservationStore(url, partition_seconds=partition_seconds(keep))
    recorded_s, passes = 0.0, []
    out: dict[str, Any] = {"partitioned": store.partitions is not None}
    for day in range(30):
        at = now - (29 - day) * DAY
        start = time.perf_counter()
        for part in _batches(day, rows_per_day, batch):
            store.record(part, now=at)
        recorded_s += time.perf_counter() - start
        start = time.perf_counter()
        store.retain(keep, now=at + DAY / 2)
        passes.append((time.perf_counter() - start) * 1000)
        if day in (9, 29):
            _analyze(store)
            rows, size = store.size()
            out[f"day_{day + 1}"] = {"rows": rows, "bytes": size, "window_ms": _windows(store)}
    out["record_per_s"] = round(30 * rows_per_day / recorded_s)
    out["retain_pass_ms"] = {
        "median": round(sorted(passes)[len(passes) // 2], 1),
        "max": round(max(passes), 1),
    }
    store.close()
    return out


def partitions_sweep(admin: sa.Engine, postgres: str, now: float) -> dict[str, Any]:
    """Observations recorded per second with P partitions held (2,000 rows each), over the
    same into an unpartitioned table holding as many rows: every write probes each
    partition's request_id index once."""
    out = {}
    for held in (1, 5, 12, 30):
        rates = []
        for plain in (True, False):
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with admin.begin() as db:
                db.exec_driver_sql(f"CREATE SCHEMA {schema}")
            url = f"{postgres}?options=-csearch_path%3D{schema}"
            try:
                if plain:
                    _unpartitioned(url)
                store = ObservationStore(url, partition_seconds=int(DAY))
                for day in range(held):
                    for part in _batches(1000 + day, 2000, 2000):
                        store.record(part, now=now - (held - day) * DAY)
                store.record(ObservationBatch(labels=[("x", 1)]), now=now)
                _analyze(store)
                batches = _batches(0, 20_000, 2000)
                start = time.perf_counter()
                for part in batches:
                    store.record(part, now=now)
                rates.append(20_000 / (time.perf_counter() - start))
                store.close()
            finally:
                with admin.begin() as db:
                    db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        out[str(held)] = {
            "unpartitioned_per_s": round(rates[0]),
            "partitioned_per_s": round(rates[1]),
            "ratio": round(rates[1] / rates[0], 2),
        }
        print(f"  {held} partition(s): {out[str(held)]}", flush=True)
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
        print("partitions held (PostgreSQL)...", flush=True)
        results["partitions_sweep"] = partitions_sweep(admin, args.postgres, now)
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
        early, late = run_["day_10"]["window_ms"], run_["day_30"]["window_ms"]
        run_["window_day30_vs_day10"] = {
            query: round(late[query] / max(early[query], 1e-3), 2) for query in late
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
        f"{results['rows']} observations over 30 days, batches of {results['batch']}, a "
        "retention pass (7d) after each day",
        f"{'store':<26} {'rec/s':>7} {'rows d10':>9} {'d30':>7} {'MB d10':>7} {'d30':>6} "
        f"{'train ms d10':>13} {'d30':>6} {'recent d10':>11} {'d30':>6} {'pass ms':>8}",
    ]
    for name in ("postgresql-partitioned", "postgresql-unpartitioned", "sqlite"):
        r = results[name]
        a, b = r["day_10"], r["day_30"]
        lines.append(
            f"{name:<26} {r['record_per_s']:>7} {a['rows']:>9} {b['rows']:>7} "
            f"{a['bytes'] / 1e6:>7.1f} {b['bytes'] / 1e6:>6.1f} "
            f"{a['window_ms']['training_window']:>13} {b['window_ms']['training_window']:>6} "
            f"{a['window_ms']['recent_frame']:>11} {b['window_ms']['recent_frame']:>6} "
            f"{r['retain_pass_ms']['median']:>8}"
        )
    lines.append(f"record_vs_unpartitioned (PostgreSQL): {results['record_vs_unpartitioned']}")
    lines.append(
        "partitioned / unpartitioned writes by partitions held: "
        + ", ".join(f"{p}: {v['ratio']}" for p, v in results["partitions_sweep"].items())
    )
    lines.append(results["machine"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

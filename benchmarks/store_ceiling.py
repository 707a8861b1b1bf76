"""What the database alone can take: the observation store's writes against an append-only
layout's, side by side in one run, on PostgreSQL and SQLite, without Kafka and decoding.

    python benchmarks/store_ceiling.py [--rounds N] [--batch B]

Per round, in a fresh schema of ``scripts/postgres``'s database (dropped afterwards) and in a
new SQLite file, the same ``--batch`` new observations at a time (a request of Adult's shape
and its prediction):

- ``record``: :meth:`ObservationStore.record` with each request and its prediction in one batch
  (the recorder's best case: one staged row, one insert an observation);
- ``record_apart``: the requests in one call, their predictions in the next (what a backlog
  gives: an insert, then an update);
- ``append_only``: each part bulk-loaded (COPY; SQLite: executemany) into a table of its own,
  indexed by ``request_id`` (a store that writes each observation's parts once and joins them
  when read): the ceiling of such a redesign on that database, before any Kafka consumption or
  decoding.

``append_only_vs_record`` is the median ratio. Compare the rates with the predictor's
(``e2e_kafka_per_s`` of ``benchmarks/predictor.py``): a recorder at 1.0x the predictor stores an
observation as fast as the predictor answers a request. Prints a table and writes
``benchmarks/results/store-ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from streamfit.stores import ObservationBatch, ObservationStore

RESULTS = Path(__file__).parent / "results"
PG = "postgresql+psycopg://streamfit:streamfit@127.0.0.1:5432/streamfit"
REQUEST = (
    b'{"request_id":"x","data":{"age":39,"workclass":"Private","fnlwgt":77516,'
    b'"education":"Bachelors","education_num":13,"marital_status":"Never-married",'
    b'"occupation":"Adm-clerical","relationship":"Not-in-family","race":"White","sex":"Male",'
    b'"capital_gain":2174,"capital_loss":0,"hours_per_week":40,"native_country":"United-States"}}'
)
APPEND_ONLY = (
    "CREATE TABLE requests (request_id text NOT NULL, data bytea, received_at float8)",
    "CREATE TABLE predictions (request_id text NOT NULL, probability float8, "
    "model_version bigint, predicted_at float8)",
    "CREATE INDEX requests_request_id ON requests (request_id)",
    "CREATE INDEX requests_received_at ON requests (received_at)",
    "CREATE INDEX predictions_request_id ON predictions (request_id)",
)


def _ids(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


def record(store: ObservationStore, batches: int, size: int, *, apart: bool) -> float:
    started = time.perf_counter()
    for _ in range(batches):
        ids = _ids(size)
        requests = [(i, REQUEST) for i in ids]
        predictions = [(i, 0.3, 1) for i in ids]
        if apart:
            store.record(ObservationBatch(requests=requests))
            store.record(ObservationBatch(predictions=predictions))
        else:
            store.record(ObservationBatch(requests=requests, predictions=predictions))
    return batches * size / (time.perf_counter() - started)


def append_only(engine: sa.Engine, batches: int, size: int) -> float:
    """Each part into its own table, one transaction a batch: COPY on PostgreSQL, executemany
    on SQLite (each the store's own bulk path)."""
    postgres = engine.dialect.name == "postgresql"
    started = time.perf_counter()
    with engine.connect() as db:
        cursor = db.connection.driver_connection.cursor()
        for _ in range(batches):
            ids, now = _ids(size), time.time()
            requests = [(request_id, REQUEST, now) for request_id in ids]
            predictions = [(request_id, 0.3, 1, now) for request_id in ids]
            if postgres:
                _copy(cursor, "requests", ["text", "bytea", "float8"], requests)
                _copy(cursor, "predictions", ["text", "float8", "int8", "float8"], predictions)
            else:
                cursor.executemany("INSERT INTO requests VALUES (?, ?, ?)", requests)
                cursor.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?)", predictions)
            db.commit()
    return batches * size / (time.perf_counter() - started)


def _copy(cursor: Any, table: str, types: list[str], rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def measure(url: str, rounds: int, batches: int, size: int) -> dict[str, Any]:
    """The three writes, ``rounds`` times, on the database at ``url`` (empty)."""
    store, engine = ObservationStore(url), sa.create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as db:
        for statement in APPEND_ONLY:
            if sqlite:
                statement = statement.replace("bytea", "blob").replace("float8", "real")
            db.exec_driver_sql(statement)
    runs: list[dict[str, float]] = []
    for number in range(1, rounds + 1):
        print(f"  round {number}/{rounds}...", flush=True)
        runs.append(
            {
                "record": record(store, batches, size, apart=False),
                "record_apart": record(store, batches, size, apart=True),
                "append_only": append_only(engine, batches, size),
            }
        )
    store.close()
    engine.dispose()
    medians = {name: round(statistics.median(r[name] for r in runs)) for name in runs[0]}
    ratio = statistics.median(r["append_only"] / r["record"] for r in runs)
    return {
        "per_s": medians,
        "append_only_vs_record": round(ratio, 2),
        "rounds": [{name: round(value) for name, value in r.items()} for r in runs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20, help="batches per run")
    parser.add_argument("--batch", type=int, default=5000, help="observations per batch")
    parser.add_argument("--postgres", default=PG)
    parser.add_argument("--out", type=Path, default=RESULTS / "store-ceiling.json")
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    machine["loadavg"] = list(os.getloadavg())
    results: dict[str, Any] = {
        "batch": args.batch,
        "observations_per_run": args.batches * args.batch,
        "machine": machine,
    }
    admin = sa.create_engine(args.postgres)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as db:
        db.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        print("postgresql...", flush=True)
        url = f"{args.postgres}?options=-csearch_path%3D{schema}"
        results["postgresql"] = measure(url, args.rounds, args.batches, args.batch)
    finally:
        with admin.begin() as db:
            db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
    with tempfile.TemporaryDirectory() as tmp:
        print("sqlite...", flush=True)
        url = f"sqlite:///{tmp}/observations.db"
        results["sqlite"] = measure(url, args.rounds, args.batches, args.batch)
    print("\n| writes (no Kafka), observations/s | PostgreSQL | SQLite |\n|---|---|---|")
    for name in results["sqlite"]["per_s"]:
        cells = [f"{results[db]['per_s'][name]:,}" for db in ("postgresql", "sqlite")]
        print(f"| {name} | {' | '.join(cells)} |")
    ratios = [str(results[db]["append_only_vs_record"]) for db in ("postgresql", "sqlite")]
    print(f"| append_only_vs_record | {' | '.join(ratios)} |")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

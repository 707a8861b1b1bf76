"""Durable store of every prediction the service made, joined with its true label when known.

SQLite in WAL mode: predictors append, the trainer and the monitor read at the same time.
The request is kept as the raw JSON message it arrived in (``{"request_id", "data"}``), so
nothing is re-encoded on the hot path; older rows that hold the bare ``data`` object read the same.
:class:`ObservationWriter` moves the writes to a thread of their own.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson
import pandas as pd

from .data import FEATURE_COLUMNS, NUMERIC_COLUMNS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    request_id    TEXT PRIMARY KEY,
    received_at   REAL NOT NULL,
    data          BLOB NOT NULL,
    probability   REAL,
    model_version INTEGER,
    label         INTEGER,
    labelled_at   REAL
);
CREATE INDEX IF NOT EXISTS observations_labelled ON observations (labelled_at)
    WHERE label IS NOT NULL;
"""

# (request_id, data as JSON bytes, probability, model_version, label or None)
Observation = tuple[str, bytes, float, int, int | None]


class ObservationStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not cross threads.
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def add(self, observations: Sequence[Observation]) -> int:
        """Store a batch; return how many *new* labelled observations it added.

        A redelivered request (at-least-once) updates its row instead of counting twice.
        """
        if not observations:
            return 0
        now = time.time()
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            labelled_ids = [o[0] for o in observations if o[4] is not None]
            already = _count_labelled(db, labelled_ids)
            db.executemany(
                """INSERT INTO observations
                       (request_id, received_at, data, probability, model_version, label,
                        labelled_at)
                   VALUES (?, ?, ?, ?, ?, ?, CASE WHEN ?6 IS NULL THEN NULL ELSE ?2 END)
                   ON CONFLICT (request_id) DO UPDATE SET
                       probability = excluded.probability,
                       model_version = excluded.model_version,
                       label = COALESCE(observations.label, excluded.label),
                       labelled_at = COALESCE(observations.labelled_at, excluded.labelled_at)""",
                [(rid, now, data, p, v, label) for rid, data, p, v, label in observations],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(labelled_ids) - already

    def set_labels(self, labels: Iterable[tuple[str, int]]) -> tuple[int, list[str]]:
        """Attach late labels. Returns (newly labelled count, ids not found)."""
        db = self._connection()
        now = time.time()
        new, unknown = 0, []
        db.execute("BEGIN IMMEDIATE")
        try:
            for request_id, label in labels:
                row = db.execute(
                    "SELECT label FROM observations WHERE request_id = ?", (request_id,)
                ).fetchone()
                if row is None:
                    unknown.append(request_id)
                elif row[0] is None:
                    db.execute(
                        "UPDATE observations SET label = ?, labelled_at = ? WHERE request_id = ?",
                        (label, now, request_id),
                    )
                    new += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new, unknown

    def count(self, labelled: bool = False) -> int:
        where = " WHERE label IS NOT NULL" if labelled else ""
        return self._connection().execute(f"SELECT COUNT(*) FROM observations{where}").fetchone()[0]

    def labelled_frame(self, limit: int | None = None) -> pd.DataFrame:
        """Labelled observations, oldest first, as raw Adult columns plus ``label``.

        ``limit`` keeps only the most recent ones.
        """
        extra = ["label", "probability", "model_version", "labelled_at"]
        return _frame(self._latest_labelled(["request_id", "data", *extra], limit), extra)

    def labelled_outcomes(self, limit: int | None = None) -> pd.DataFrame:
        """``label``, ``probability``, ``model_version`` of labelled observations, oldest first.

        No request is decoded: the monitor's realised metrics read many rows every check.
        """
        columns = ["label", "probability", "model_version"]
        return pd.DataFrame(self._latest_labelled(columns, limit), columns=columns)

    def _latest_labelled(self, columns: list[str], limit: int | None) -> list[tuple]:
        """``columns`` of the labelled observations (the newest ``limit``), oldest first."""
        query = (
            f"SELECT {', '.join(columns)} FROM observations "
            "WHERE label IS NOT NULL ORDER BY labelled_at DESC, rowid DESC"
        )
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return self._connection().execute(query).fetchall()[::-1]

    def recent_frame(self, limit: int) -> pd.DataFrame:
        """The most recent observations, labelled or not, oldest first."""
        rows = (
            self._connection()
            .execute(
                "SELECT request_id, data, label, probability, model_version, received_at "
                "FROM observations ORDER BY rowid DESC LIMIT ?",
                (int(limit),),
            )
            .fetchall()[::-1]
        )
        return _frame(rows, ["label", "probability", "model_version", "received_at"])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class ObservationWriter:
    """Stores observation batches on a thread of its own, while the caller goes on.

    sqlite3 lets go of the GIL while SQLite works, so the writes of a batch overlap with the
    predictor encoding, producing and waiting for the broker's acknowledgements. ``submit``
    queues a batch (it blocks while ``max_pending`` batches wait: back-pressure, bounded memory);
    ``wait`` returns once every submitted batch is stored and re-raises a failed write. The
    predictor calls ``wait`` before it commits a batch's offsets, so a request never counts as
    done before its observation is stored, and before it attaches late labels.
    """

    def __init__(self, store: ObservationStore, max_pending: int = 4) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.store = store
        self._queue: queue.Queue[Sequence[Observation] | None] = queue.Queue(max_pending)
        self._done = threading.Condition()
        self._submitted = self._written = 0
        self._labelled = 0  # new labelled observations stored, not yet taken
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="observation-writer", daemon=True)
        self._thread.start()

    def submit(self, observations: Sequence[Observation]) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the observation writer is closed")
        with self._done:
            self._submitted += 1
        self._queue.put(observations)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every submitted batch is stored; raise the first write error, if any."""
        with self._done:
            if not self._done.wait_for(lambda: self._written >= self._submitted, timeout):
                raise TimeoutError(f"observations not stored within {timeout} s")
            error, self._error = self._error, None
        if error is not None:
            raise error

    def take_labelled(self) -> int:
        """New labelled observations stored since the last call."""
        with self._done:
            count, self._labelled = self._labelled, 0
        return count

    def close(self) -> None:
        """Store what is pending, then stop the thread. Raises a failed write."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.wait(timeout=0)

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                added = self.store.add(batch)
            except BaseException as exc:  # handed to the caller by wait()
                added, error = 0, exc
            else:
                error = None
            with self._done:
                self._written += 1
                self._labelled += added
                if error is not None and self._error is None:
                    self._error = error
                self._done.notify_all()
        self.store.close()  # this thread's connection


def _count_labelled(db: sqlite3.Connection, ids: list[str]) -> int:
    total = 0
    for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        total += db.execute(
            "SELECT COUNT(*) FROM observations"
            f" WHERE label IS NOT NULL AND request_id IN ({marks})",
            chunk,
        ).fetchone()[0]
    return total


def _frame(rows: list[tuple], extra: list[str]) -> pd.DataFrame:
    records = []
    for request_id, data, *rest in rows:
        record = orjson.loads(data)
        if isinstance(record.get("data"), dict):  # the whole request message, as it arrived
            record = record["data"]
        record = {name: record.get(name) for name in FEATURE_COLUMNS}
        record["request_id"] = request_id
        record.update(zip(extra, rest, strict=True))
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=[*FEATURE_COLUMNS, "request_id", *extra])
    for name in NUMERIC_COLUMNS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame

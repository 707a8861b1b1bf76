"""The predictor's observation writer thread (until the predictor is stateless, issue 10).

:class:`ObservationWriter` moves the predictor's writes to the observation store to a thread of
their own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from ..stores import Observation, ObservationStore


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

"""A predictor's stable transactional id: ``<group>-<instance>-<slot>``.

Under exactly-once, each predictor commits its answers and its input offsets as one Kafka
transaction. A predictor killed mid-transaction leaves that transaction open, and read_committed
readers (the app, the recorder) see nothing past it on its partitions until the broker aborts
it: after ``transaction.timeout.ms`` (120 s) if nothing else happens. Kafka's own remedy, as in
Kafka Streams, is a transactional id that outlives the process: the replacement's
``init_transactions`` fences the predecessor and has the broker abort its open transaction at
once. So the id must be the same for a predictor and its replacement, and different for two
predictors alive at once (they would fence each other: the fenced one exits and says so).

* ``instance``: the ``instance_id`` setting, else the host name and a digest of the data
  directory (a supervisor restarts a predictor with the same ones; two predictors on one host
  with their own data directories differ).
* ``slot``: the lowest number whose lock file under ``<data_dir>/predictor-slots`` this process
  can lock, held for its life. The K processes of ``--processes K`` share the data directory
  and so get slots 0..K-1; a SIGKILLed predictor's lock dies with it, and its replacement takes
  the same slot, so the same id.

Predictors on different hosts must differ by ``instance``: locks are local to a host. Where host
names are not stable across a restart (a Kubernetes Deployment), set ``instance_id`` to
something that is (a StatefulSet's pod name); otherwise the replacement does not fence and its
readers may wait out the transaction timeout, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import socket
from pathlib import Path
from typing import IO

_MAX_SLOTS = 1024
SLOTS_DIR = "predictor-slots"


def default_instance(data_dir: Path) -> str:
    """The host name and a short digest of the data directory's absolute path."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class PredictorSlot(contextlib.AbstractContextManager["PredictorSlot"]):
    """Holds one slot of ``(group, instance)`` under ``data_dir`` while open.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as data_dir:
    ...     with PredictorSlot(Path(data_dir), "eos", "host-a") as first:
    ...         with PredictorSlot(Path(data_dir), "eos", "host-a") as second:
    ...             ids = first.transactional_id, second.transactional_id
    ...         with PredictorSlot(Path(data_dir), "eos", "host-a") as again:
    ...             ids += (again.transactional_id,)
    >>> ids
    ('eos-host-a-0', 'eos-host-a-1', 'eos-host-a-1')
    """

    def __init__(self, data_dir: Path, group: str, instance: str = "") -> None:
        if not group:
            raise ValueError("a predictor slot needs a consumer group name")
        self.data_dir = Path(data_dir)
        self.group = group
        self.instance = instance or default_instance(self.data_dir)
        self.slot: int | None = None
        self._lock: IO[bytes] | None = None

    @property
    def transactional_id(self) -> str:
        if self.slot is None:
            raise RuntimeError("the slot is not held: open it first")
        return f"{self.group}-{self.instance}-{self.slot}"

    def __enter__(self) -> PredictorSlot:
        directory = self.data_dir / SLOTS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        # Lock files are named by a digest: group and instance may hold any character.
        key = hashlib.sha256(f"{self.group}\0{self.instance}".encode()).hexdigest()[:16]
        for slot in range(_MAX_SLOTS):
            handle = (directory / f"{key}-{slot}.lock").open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            # Not inherited (PEP 446): a model build child does not outlive us holding it.
            self.slot, self._lock = slot, handle
            return self
        raise RuntimeError(f"all {_MAX_SLOTS} predictor slots under {directory} are held")

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock, self.slot = None, None

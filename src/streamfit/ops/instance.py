"""A group member's stable id: ``<group>-<instance>-<slot>``, kept across restarts.

Every service in a consumer group (predictor, recorder, trainer) joins it under this id as a
*static member* (Kafka's ``group.instance.id``), and an exactly-once predictor also uses it as
its transactional id. A process SIGKILLed keeps its partitions until the group's session times
out (45 s by default): a replacement that joins under the same id takes them over at once, with
no rebalance; a replacement under the same transactional id fences the killed predictor and has
the broker abort its open transaction at once. So the id must be the same for a process and its
replacement, and different for two processes alive at once (Kafka fences the older of two: it
stops with :func:`taken_over`'s message).

* ``instance``: the ``instance_id`` setting, else the host name and a digest of the data
  directory (a supervisor restarts a service with the same ones; two on one host with their
  own data directories differ).
* ``slot``: the lowest number whose lock file under ``<data_dir>/instance-slots`` this process
  can lock for ``(group, instance)``, held for its life. The K processes of ``--processes K``
  (or several recorders) sharing a data directory get slots 0..K-1; a SIGKILLed process's lock
  dies with it, and its replacement takes the same slot, so the same id.

Processes on different hosts must differ by ``instance``: locks are local to a host. Where host
names are not stable across a restart (a Kubernetes Deployment), set ``instance_id`` to
something that is (a StatefulSet's pod name); otherwise a replacement is a new member, and the
killed one's partitions wait for the session timeout, as without static membership.

A static member that stops cleanly does not leave its group either (Kafka's rule, and librdkafka
has no way to override it): its partitions wait for it, up to the session timeout, without a
rebalance. That is the right trade for a restart, the usual reason for a clean stop (a deploy,
a supervisor): the member comes back under the same id and the others are never disturbed. A
member removed for good (a host taken away, ``--processes`` lowered) costs its partitions one
session timeout (45 s) before the others take them; nothing is lost meanwhile (everything it
answered is committed before it stops). Where that wait matters, lower ``session.timeout.ms``
with ``--bus-option``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import socket
from pathlib import Path
from typing import IO

_MAX_SLOTS = 1024
SLOTS_DIR = "instance-slots"


def default_instance(data_dir: Path) -> str:
    """The host name and a short digest of the data directory's absolute path."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def taken_over(service: str, stable_id: str | None, cause: object) -> str:
    """The one line a service stops with when Kafka fenced it: another process joined under its
    id (its replacement, or a second live process given the same ``instance_id``)."""
    return (
        f"stopping: another {service} took over id {stable_id!r}. If it is not this "
        f"{service}'s replacement, two live {service}s share an id: give each its own "
        f"--instance-id (setting instance_id, STREAMFIT_INSTANCE_ID). ({cause})"
    )


class InstanceSlot(contextlib.AbstractContextManager["InstanceSlot"]):
    """Holds one slot of ``(group, instance)`` under ``data_dir`` while open.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as data_dir:
    ...     with InstanceSlot(Path(data_dir), "eos", "host-a") as first:
    ...         with InstanceSlot(Path(data_dir), "eos", "host-a") as second:
    ...             ids = first.stable_id, second.stable_id
    ...         with InstanceSlot(Path(data_dir), "eos", "host-a") as again:
    ...             ids += (again.stable_id,)
    >>> ids
    ('eos-host-a-0', 'eos-host-a-1', 'eos-host-a-1')
    """

    def __init__(self, data_dir: Path, group: str, instance: str = "") -> None:
        if not group:
            raise ValueError("an instance slot needs a consumer group name")
        self.data_dir = Path(data_dir)
        self.group = group
        self.instance = instance or default_instance(self.data_dir)
        self.slot: int | None = None
        self._lock: IO[bytes] | None = None

    @property
    def stable_id(self) -> str:
        """The group member's ``group.instance.id`` (and an exactly-once predictor's
        transactional id)."""
        if self.slot is None:
            raise RuntimeError("the slot is not held: open it first")
        return f"{self.group}-{self.instance}-{self.slot}"

    def __enter__(self) -> InstanceSlot:
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
        raise RuntimeError(f"all {_MAX_SLOTS} instance slots under {directory} are held")

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock, self.slot = None, None

"""Which member of a consumer group holds a static instance id, asked in a process of its own.

librdkafka's admin client can abort the whole process (the assertion ``eonce->refcnt > 0`` in
``rd_kafka_enq_once_del_source_return``, librdkafka issue #4605) when a request timed out while
the broker was away and the broker then comes back. A consumer asks this just after a broker
restart, so a child process asks: the abort then costs one answer, asked again, not the service.

The child is ``python -m streamfit.bus._group_holder``: a JSON request on stdin, the holder's
member id on stdout as JSON ("" if no member holds the id, null if the group could not be
described in time).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

# Longer than a child needs to start and to give up (its request's timeout) on its own.
_CHILD_GRACE_S = 15.0


def group_holder(
    bootstrap: str, options: dict[str, Any], group: str, instance_id: str, timeout: float = 30.0
) -> str | None:
    """The member id that holds ``instance_id`` in ``group``, "" if none does; None if the
    group cannot be described within ``timeout`` (a broker still starting)."""
    question = {
        "bootstrap": bootstrap,
        "options": options,
        "group": group,
        "instance_id": instance_id,
    }
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            child = subprocess.run(
                [sys.executable, "-m", __name__],
                input=json.dumps({**question, "timeout": remaining}, default=str),
                capture_output=True,
                text=True,
                timeout=remaining + _CHILD_GRACE_S,
            )
        except subprocess.TimeoutExpired:
            return None
        if child.returncode == 0:
            return json.loads(child.stdout)
        time.sleep(0.5)  # the child aborted: a new one, with a new client, asks again
    return None


def _describe(request: dict[str, Any]) -> str | None:
    """The child's work: ask until the group is described or the request's time is up."""
    import concurrent.futures

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": request["bootstrap"], **request["options"]})
    group, instance_id = request["group"], request["instance_id"]
    deadline = time.monotonic() + request["timeout"]
    while time.monotonic() < deadline:
        try:
            futures = admin.describe_consumer_groups([group], request_timeout=5)
            description = futures[group].result(timeout=10)
        except (KafkaException, concurrent.futures.TimeoutError):
            time.sleep(0.5)
            continue
        for member in description.members:
            if member.group_instance_id == instance_id:
                return member.member_id
        return ""
    return None


if __name__ == "__main__":
    print(json.dumps(_describe(json.loads(sys.stdin.read()))))

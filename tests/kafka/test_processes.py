"""``streamfit predictor --processes K``: K children in one consumer group, one parent."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import time
import urllib.request

import pytest

from streamfit.serving.processes import PORT_STEP
from tests.harness import wait_until

pytestmark = pytest.mark.kafka


def _free_base_port() -> int:
    """A port P with P and P + PORT_STEP both free on this host."""
    for _ in range(100):
        base = random.randrange(20_000, 40_000)
        try:
            for port in (base, base + PORT_STEP):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free pair of ports")


def _children(deployment, parent) -> list[int]:
    """The children's pids, as the parent logs them."""
    return [
        int(p)
        for p in re.findall(r"predictor process \d+ of \d+: pid (\d+)", deployment.log(parent))
    ]


def _wait_for_consumers(deployment, parent, count: int, timeout: float = 180) -> None:
    wait_until(
        lambda: deployment.log(parent).count("predictor consuming") >= count,
        timeout,
        f"{count} predictor processes consuming",
        log=lambda: deployment.log(parent),
        process=parent,
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_two_processes_answer_every_request_once_and_both_own_partitions(deployment, guarantee):
    base = _free_base_port()
    parent = deployment.start(
        "predictor", "--processes", "2", "--metrics-port", str(base), "--guarantee", guarantee
    )
    _wait_for_consumers(deployment, parent, 2)
    assert len(_children(deployment, parent)) == 2
    if guarantee == "exactly-once":  # one data directory, two slots: two transactional ids
        ids = re.findall(r"exactly-once as transactional id '([^']+)'", deployment.log(parent))
        assert len(ids) == len(set(ids)) == 2, ids
    # Both children are members of the one group, each with partitions of its own. Traffic
    # starts once the group is stable: a rebalance under traffic may answer a request twice at
    # least once (the new owner reads what the old one answered but had not committed).
    deadline = time.monotonic() + 120
    while True:
        members = deployment.group_members(deployment.settings.group)
        if len(members) == 2 and all(members.values()):
            break
        assert time.monotonic() < deadline, members
        time.sleep(1)
    assert sum(members.values()) == deployment.settings.request_partitions
    summary = deployment.run_app("--count", "600", "--rate", "300")
    assert summary["answered"] == 600 and summary["lost"] == 0
    assert summary["duplicates"] == 0 and summary["dead_letters"] == 0
    # Each child serves its probes on its own port: the base, then the base + PORT_STEP.
    for port in (base, base + PORT_STEP):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200
    # SIGTERM to the parent stops both children cleanly: exit 0.
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=90) == 0
    assert not any(_alive(pid) for pid in _children(deployment, parent))


def test_a_child_that_dies_stops_the_set_and_the_parent_exits_non_zero(deployment):
    parent = deployment.start("predictor", "--processes", "2", "--metrics-port", "0")
    _wait_for_consumers(deployment, parent, 2)
    first, second = _children(deployment, parent)
    os.kill(first, signal.SIGKILL)
    assert parent.wait(timeout=90) == 128 + signal.SIGKILL
    assert "exited with code -9: stopping the others" in deployment.log(parent)
    assert not _alive(second)

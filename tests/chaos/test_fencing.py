"""Exactly-once after a SIGKILL mid-transaction: the replacement predictor takes the same
transactional id (streamfit/instance.py), fences its predecessor and has the broker abort the
open transaction at once. Read_committed readers (the app, the recorder) then wait seconds,
not the transaction timeout (120 s), and still get every answer exactly once."""

from __future__ import annotations

import os
import random
import re
import signal
import time

import orjson
import pytest

from streamfit.bus import Consumer
from tests.chaos.conftest import start_app
from tests.harness import wait_until

pytestmark = pytest.mark.kafka

# What a read_committed reader may wait after the kill: the replacement's start-up, its group
# join (under the killed one's id: at once) and a batch, on a loaded machine. Without fencing
# the open transaction holds the partition until the broker times it out: >= 120 s.
STALL_BOUND_S = 60.0
COUNT = 9000  # 30 s at 300 requests/s


def _read_ids(consumer: Consumer, into: set[str]) -> None:
    """Everything waiting on ``consumer`` (until it is quiet for half a second)."""
    while batch := consumer.poll(1000, timeout=0.3):
        into.update(orjson.loads(m.value)["request_id"] for m in batch)


def _transactional_id(log: str) -> str:
    found = re.search(r"exactly-once as transactional id '([^']+)'", log)
    assert found, log[-2000:]
    return found.group(1)


def test_a_predictor_killed_mid_transaction_is_fenced_by_its_replacement(deployment, chaos_report):
    rng = random.Random(7)
    bus = deployment.bus()
    topic = deployment.topics.predictions
    committed_reader = bus.consumer([topic], group=None, read_committed=True)
    uncommitted_reader = bus.consumer([topic], group=None, read_committed=False)
    committed: set[str] = set()
    uncommitted: set[str] = set()
    args = ("--guarantee", "exactly-once")
    first = deployment.start("predictor", *args, name="predictor-a")
    deployment.wait_for_log(first, "predictor consuming")
    app, summary_path = start_app(deployment, "app", "--count", str(COUNT), "--rate", "300")
    deployment.wait_for_log(app, "sent ")

    # Freeze the predictor until the broker holds answers of a transaction it has not committed
    # (what is sent but uncommitted shows only to a read_uncommitted reader), then kill it there.
    # A transaction holds answers on the broker for a few milliseconds of each batch: a freeze
    # catches one within a few tries (once, in ten); the stream lasts for some 40.
    in_flight: set[str] = set()
    tries = 0
    while not in_flight and app.poll() is None and tries < 200:
        tries += 1
        os.kill(first.pid, signal.SIGSTOP)
        time.sleep(0.5)  # whatever it sent reaches the broker, a commit in flight completes
        _read_ids(committed_reader, committed)
        _read_ids(uncommitted_reader, uncommitted)
        in_flight = uncommitted - committed
        if in_flight:
            break
        os.kill(first.pid, signal.SIGCONT)
        time.sleep(rng.uniform(0.05, 0.4))
    assert in_flight, f"never caught the predictor with a transaction open ({tries} tries)"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed = time.monotonic()
    second = deployment.start("predictor", *args, name="predictor-b")

    # The answers of the killed transaction were aborted; the replacement answers those
    # requests again (their offsets were never committed), in a transaction of its own.
    wait_until(
        lambda: _read_ids(committed_reader, committed) or in_flight <= committed,
        STALL_BOUND_S + 120,
        "the killed transaction's requests answered again",
    )
    stall = time.monotonic() - killed
    summary = deployment.app_summary(app, summary_path, timeout=400)
    committed_reader.close()
    uncommitted_reader.close()
    bus.close()
    chaos_report.add(
        "SIGKILL predictor mid-transaction (reader stall)",
        requests=summary["sent"],
        lost=summary["lost"],
        duplicates=summary["duplicates"],
        recovery_s=stall,
    )
    # The same slot, so the same transactional id: that is what fenced the predecessor.
    assert _transactional_id(deployment.log(second)) == _transactional_id(deployment.log(first))
    assert stall < STALL_BOUND_S, f"read_committed readers waited {stall:.1f} s"
    assert summary["sent"] == COUNT
    assert summary["answered"] == COUNT and summary["lost"] == 0
    assert summary["duplicates"] == 0  # the app reads predictions read_committed
    assert second.poll() is None


def test_two_live_predictors_given_one_instance_id_the_fenced_one_exits_naming_the_setting(
    deployment,
):
    args = ("--guarantee", "exactly-once", "--instance-id", "twin")
    first = deployment.start("predictor", *args, name="twin-a")
    deployment.wait_for_log(first, "predictor consuming")
    # Another data directory (another host, say), the same instance id: the same transactional id.
    other = ("--data-dir", str(deployment.root / "other-data"))
    second = deployment.start("predictor", *args, *other, name="twin-b")
    deployment.wait_for_log(second, "predictor consuming")
    assert _transactional_id(deployment.log(second)) == _transactional_id(deployment.log(first))
    app, _summary = start_app(deployment, "app", "--count", "3000", "--rate", "300")
    wait_until(lambda: first.poll() is not None, 120, "the fenced predictor to exit")
    assert first.returncode == 2
    log = deployment.log(first)
    assert "another predictor took over id 'predictors-" in log and "--instance-id" in log
    assert "Traceback" not in log  # one clear line, not a crash
    assert second.poll() is None
    app.terminate()
    app.wait(timeout=60)

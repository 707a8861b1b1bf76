"""Kafka group membership that the in-process bus has no counterpart for."""

from __future__ import annotations

import time

import pytest

from streamfit.bus import get_bus
from tests.bus.test_contract import drain, publish, unique

pytestmark = pytest.mark.kafka

# A dead member leaves after 6 s, the broker's minimum (and the floor of max.poll.interval.ms).
FAST = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}


@pytest.mark.parametrize(("interval_s", "evicted"), [(7.0, True), (120.0, False)])
def test_a_member_working_longer_than_its_poll_interval_loses_its_messages(
    kafka_bootstrap: str, interval_s: float, evicted: bool
) -> None:
    """The trainer's case: a round works for long without polling. Past ``max_poll_interval_s``
    the group evicts the member, its commit is refused and the command comes again; within it,
    the commit holds (the trainer asks for hours, Kafka's default is 5 minutes)."""
    bus = get_bus(f"kafka://{kafka_bootstrap}", FAST)
    topic, group = unique("long-work"), unique("group")
    bus.ensure_topics({topic: 1})
    with bus.producer() as producer:
        publish(producer, topic, [b"retrain"])
    with bus.consumer([topic], group=group, max_poll_interval_s=interval_s) as worker:
        assert [m.value for m in drain(worker, 1)] == [b"retrain"]
        time.sleep(12)  # the long round, no poll meanwhile
        worker.commit()
    with bus.consumer([topic], group=group) as successor:
        again = drain(successor, 1, timeout=12 if evicted else 8)
    assert [m.value for m in again] == ([b"retrain"] if evicted else [])
    bus.close()

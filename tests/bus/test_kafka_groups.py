"""Kafka group membership that the in-process bus has no counterpart for."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from confluent_kafka import KafkaError

from streamfit.bus import Bus, BusFenced, get_bus
from streamfit.bus._kafka import _Rejoined
from tests.bus.test_contract import drain, publish, unique
from tests.conftest import REPO

pytestmark = pytest.mark.kafka


def _seeded(
    kafka_bootstrap: str, prefix: str, values: list[bytes], partitions: int = 1
) -> tuple[Bus, str, str]:
    """A bus, a new topic of ``partitions`` holding ``values``, and a new group's name."""
    bus = get_bus(f"kafka://{kafka_bootstrap}")
    topic = unique(prefix)
    bus.ensure_topics({topic: partitions})
    with bus.producer() as producer:
        publish(producer, topic, values)
    return bus, topic, unique("group")


@pytest.mark.parametrize(("interval_s", "evicted"), [(7.0, True), (120.0, False)])
def test_a_member_working_longer_than_its_poll_interval_loses_its_messages(
    kafka_bootstrap: str, interval_s: float, evicted: bool
) -> None:
    """The trainer's case: a round works for long without polling. Past ``max_poll_interval_s``
    the group evicts the member, its commit is refused and the command comes again; within it,
    the commit holds (the trainer asks for hours, Kafka's default is 5 minutes). A poll interval
    below the session timeout (45 s) shortens the session to match: librdkafka refuses one
    longer than the interval."""
    bus, topic, group = _seeded(kafka_bootstrap, "long-work", [b"retrain"])
    with bus.consumer([topic], group=group, max_poll_interval_s=interval_s) as worker:
        assert [m.value for m in drain(worker, 1)] == [b"retrain"]
        time.sleep(12)  # the long round, no poll meanwhile
        worker.commit()
    with bus.consumer([topic], group=group) as successor:
        again = drain(successor, 1, timeout=12 if evicted else 8)
    assert [m.value for m in again] == ([b"retrain"] if evicted else [])
    bus.close()


# Far below the session timeout (45 s): what a replacement under the same id waits at most.
TAKEOVER_S = 10.0


def test_a_member_joining_under_the_id_of_a_gone_one_takes_its_partitions_at_once(
    kafka_bootstrap: str,
) -> None:
    """Static membership: a member that is gone without leaving (killed; a static member's close
    does not leave either) keeps its partitions for the session timeout, unless a replacement
    joins under its instance id: that one gets them at once, with the committed offsets."""
    bus, topic, group = _seeded(kafka_bootstrap, "static", [b"one", b"two", b"three"], partitions=3)
    with bus.consumer([topic], group=group, instance_id="member-0") as first:
        assert sorted(m.value for m in drain(first, 3)) == [b"one", b"three", b"two"]
        first.commit()
    with bus.producer() as producer:
        publish(producer, topic, [b"four"])
    started = time.monotonic()
    with bus.consumer([topic], group=group, instance_id="member-0") as replacement:
        got = drain(replacement, 1, timeout=TAKEOVER_S)
        took = time.monotonic() - started
    assert [m.value for m in got] == [b"four"], f"nothing in {took:.1f} s"
    assert took < TAKEOVER_S
    bus.close()


def test_two_live_members_with_one_instance_id_the_older_is_fenced_and_says_so(
    kafka_bootstrap: str,
) -> None:
    bus, topic, group = _seeded(kafka_bootstrap, "twins", [b"first"])
    with bus.consumer([topic], group=group, instance_id="twin") as older:
        assert [m.value for m in drain(older, 1)] == [b"first"]
        with bus.consumer([topic], group=group, instance_id="twin") as newer:
            newer.poll(1, timeout=1.0)  # joins, under the older one's id
            deadline = time.monotonic() + 30  # the older one learns it at its next heartbeat
            with pytest.raises(BusFenced, match="group.instance.id 'twin'"):
                while time.monotonic() < deadline:
                    older.poll(1, timeout=0.5)
                    older.commit()
    bus.close()


def test_a_member_fenced_while_it_still_holds_its_own_id_rejoins_and_goes_on(
    kafka_bootstrap: str,
) -> None:
    """The broker away for longer than the session: librdkafka rejoins under a new member id,
    then reports the old session's commit as FENCED_INSTANCE_ID, as it would for a twin. The
    group's record shows no other member under the id, so the consumer starts again instead of
    stopping; what it had polled but not committed comes again. (Driven here by handing the
    consumer that error: a broker outage that long is tests/kafka/test_services.py's.)"""
    bus = get_bus(f"kafka://{kafka_bootstrap}")
    topic, group = unique("lapsed"), unique("group")
    bus.ensure_topics({topic: 1})
    with (
        bus.producer() as producer,
        bus.consumer([topic], group=group, instance_id="solo") as member,
    ):
        publish(producer, topic, [b"one"])
        assert [m.value for m in drain(member, 1)] == [b"one"]
        member.commit()
        publish(producer, topic, [b"two"])
        assert [m.value for m in drain(member, 1)] == [b"two"]  # polled, not committed
        fenced = KafkaError(
            KafkaError.FENCED_INSTANCE_ID,
            "Commit failed: Broker: Static consumer fenced by other consumer with same "
            "group.instance.id",
            fatal=True,
        )
        with pytest.raises(_Rejoined):  # poll() turns it into an empty batch
            member._handle_error(fenced)
        assert [m.value for m in drain(member, 1, timeout=TAKEOVER_S)] == [b"two"]
        member.commit()
    bus.close()


def test_asking_who_holds_an_instance_id_across_a_broker_restart_does_not_end_the_asker(
    kafka_bootstrap: str,
) -> None:
    """A fenced member asks the group who holds its instance id right after a broker restart.
    librdkafka's admin client aborts its process when a request timed out while the broker was
    away and the broker then comes back (librdkafka #4605): the question is asked so that it
    cannot take the asking service down, and it is answered once the broker is back."""
    bus, topic, group = _seeded(kafka_bootstrap, "holder", [b"one"])
    with bus.consumer([topic], group=group, instance_id="solo") as member:
        assert drain(member, 1)  # joined; a static member stays in the group once closed
        held = member._consumer.memberid()
    bus.close()
    kafka = REPO / "scripts" / "kafka"
    subprocess.run([kafka, "down"], check=True, timeout=120)
    try:
        ask = "import sys; from streamfit.bus import get_bus; "
        ask += "print(get_bus(sys.argv[1])._holder(sys.argv[2], 'solo'))"
        asker = subprocess.Popen(
            [sys.executable, "-c", ask, bus.url, group], stdout=subprocess.PIPE, text=True
        )
        time.sleep(8)  # its requests time out while the broker is away
    finally:
        subprocess.run([kafka, "up"], check=True, timeout=300)
    out, _ = asker.communicate(timeout=120)
    assert asker.returncode == 0, f"the asker died (exit {asker.returncode})"
    assert out.strip() == held

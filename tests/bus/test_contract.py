"""One contract, every bus: the semantics in ``streamfit.bus._base``'s docstring, checked against
the in-process bus and a real Kafka broker alike. Each test uses topics and groups of its own."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from streamfit.bus import Bus, BusFenced, BusUnavailable, Consumer, Message, Producer


def unique(prefix: str) -> str:
    return f"test-{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic(bus: Bus) -> str:
    name = unique("topic")
    bus.ensure_topics({name: 3})
    return name


def publish(producer: Producer, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    for value in values:
        producer.produce(topic, value, key)
    producer.flush()


def drain(consumer: Consumer, count: int, timeout: float = 30.0) -> list[Message]:
    """Poll until ``count`` messages arrived (or ``timeout``): the first poll also joins."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(100, timeout=0.5)
    return got


def values(messages: list[Message]) -> list[bytes]:
    return [m.value for m in messages]


def test_round_trip_keeps_values_keys_and_per_key_order(bus: Bus, topic: str) -> None:
    sent = [(f"k{i % 4}".encode(), f"v{i}".encode()) for i in range(40)]
    with bus.producer() as producer:
        for key, value in sent:
            producer.produce(topic, value, key)
        producer.produce(topic, b"no key")
        producer.flush()
    with bus.consumer([topic], group=unique("group")) as consumer:
        got = drain(consumer, len(sent) + 1)
    pairs = [(m.key or b"", m.value) for m in got]
    assert sorted(pairs) == sorted([*sent, (b"", b"no key")])
    assert [m.key for m in got if m.value == b"no key"] == [None]
    assert all(m.topic == topic and m.offset >= 0 for m in got)
    for key in {k for k, _ in sent}:  # one key, one partition: order is kept
        assert [m.value for m in got if m.key == key] == [v for k, v in sent if k == key]


def test_produce_many_is_produce_one_by_one(bus: Bus, topic: str) -> None:
    keys = [f"k{i % 3}".encode() for i in range(30)]
    sent = [f"v{i}".encode() for i in range(30)]
    with bus.producer() as producer:
        producer.produce_many(topic, sent, keys)
        with pytest.raises(ValueError):  # a value without its key is refused, nothing half-sent
            producer.produce_many(topic, [b"lone", b"other"], [b"k"])
        producer.flush()
    with bus.consumer([topic], group=unique("group")) as consumer:
        got = drain(consumer, len(sent))
    assert sorted((m.key, m.value) for m in got) == sorted(zip(keys, sent, strict=True))
    for key in set(keys):  # per key in order, as produce() keeps it
        assert [m.value for m in got if m.key == key] == [
            v for k, v in zip(keys, sent, strict=True) if k == key
        ]


def test_members_of_a_group_split_the_messages(bus: Bus, topic: str) -> None:
    group = unique("group")
    with (
        bus.producer() as producer,
        bus.consumer([topic], group) as first,
        bus.consumer([topic], group) as second,
    ):
        members = [first, second]
        # Warm up until both members got a message: then both have joined, and no rebalance
        # will move a partition (and its uncommitted messages) from one to the other.
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 2:
            assert time.monotonic() < deadline, "the two members never both got messages"
            for _ in range(6):
                producer.produce(topic, b"warm-up", uuid.uuid4().bytes)
            producer.flush()
            for _ in range(3):
                for index, member in enumerate(members):
                    if member.poll(1, timeout=0.2):
                        seen.add(index)
                    member.commit()
        sent = [f"m{i}".encode() for i in range(60)]
        for value in sent:
            producer.produce(topic, value, value)  # keyed by value: spread over partitions
        producer.flush()
        got: list[list[bytes]] = [[], []]
        deadline = time.monotonic() + 30
        while sum(len(g) for g in got) < len(sent) and time.monotonic() < deadline:
            for index, member in enumerate(members):
                batch = [v for v in values(member.poll(10, timeout=0.2)) if v != b"warm-up"]
                got[index] += batch
                member.commit()
    assert sorted(got[0] + got[1]) == sorted(sent)
    assert not set(got[0]) & set(got[1]), "a message reached both members of the group"
    assert got[0] and got[1], "one member got every message"


def test_broadcast_consumers_each_get_every_message_published_after_they_start(
    bus: Bus, topic: str
) -> None:
    with bus.producer() as producer:
        publish(producer, topic, [b"before"])
        with bus.consumer([topic], None) as one, bus.consumer([topic], None) as two:
            sent = [f"b{i}".encode() for i in range(30)]
            publish(producer, topic, sent, key=None)
            for consumer in (one, two):
                assert sorted(values(drain(consumer, len(sent)))) == sorted(sent)
                assert consumer.poll(10, timeout=0.5) == []


def test_uncommitted_messages_go_to_the_next_member_after_close(bus: Bus, topic: str) -> None:
    group = unique("group")
    sent = [f"u{i}".encode() for i in range(12)]
    with bus.producer() as producer:
        publish(producer, topic, sent)
    with bus.consumer([topic], group) as first:
        assert sorted(values(drain(first, len(sent)))) == sorted(sent)
    with bus.consumer([topic], group) as second:
        assert sorted(values(drain(second, len(sent)))) == sorted(sent)


def test_committed_messages_are_not_delivered_again(bus: Bus, topic: str) -> None:
    group = unique("group")
    sent = [f"c{i}".encode() for i in range(12)]
    with bus.producer() as producer:
        publish(producer, topic, sent)
        with bus.consumer([topic], group) as first:
            committed: list[Message] = []
            while len(committed) < 5:
                committed += first.poll(5, timeout=10)
            first.commit()
            rest = drain(first, len(sent) - len(committed))  # read but never committed
            assert sorted(values(committed + rest)) == sorted(sent)
        publish(producer, topic, [b"after"])
        with bus.consumer([topic], group) as second:
            again = drain(second, len(rest) + 1)
            assert second.poll(10, timeout=1.0) == []
    assert sorted(values(again)) == sorted([*values(rest), b"after"])


def test_poll_waits_up_to_the_timeout_and_returns_early_for_a_message(bus: Bus, topic: str) -> None:
    with bus.producer() as producer, bus.consumer([topic], unique("group")) as consumer:
        started = time.monotonic()
        assert consumer.poll(10, timeout=0.5) == []
        assert 0.45 <= time.monotonic() - started < 5

        publish(producer, topic, [b"first"])
        assert values(drain(consumer, 1)) == [b"first"]  # joined the group by now

        # A batch does not wait to be full: what is waiting comes back at once.
        publish(producer, topic, [b"x1", b"x2", b"x3"], key=b"same")
        time.sleep(0.5)
        started = time.monotonic()
        batch = consumer.poll(100, timeout=10)
        assert batch and time.monotonic() - started < 2
        batch += drain(consumer, 3 - len(batch))
        assert values(batch) == [b"x1", b"x2", b"x3"]

        # poll wakes up for a message published while it waits.
        timer = threading.Timer(0.3, publish, (producer, topic, [b"late"]))
        timer.start()
        started = time.monotonic()
        late = consumer.poll(100, timeout=20)
        timer.join()
        if not late:  # the timer thread's flush may end after poll's first wake-up
            late = drain(consumer, 1)
        assert values(late) == [b"late"]
        assert time.monotonic() - started < 10


def test_transactions_are_visible_to_read_committed_consumers_only_when_committed(
    bus: Bus,
) -> None:
    source, sink = unique("source"), unique("sink")
    bus.ensure_topics({source: 3, sink: 3})
    group = unique("group")
    inputs = [f"t{i}".encode() for i in range(6)]
    with bus.producer() as producer:
        publish(producer, source, inputs)
    processor = bus.transactional_producer(unique("tx"))
    with (
        bus.consumer([source], group, read_committed=True) as consumer,
        bus.consumer([sink], unique("reader"), read_committed=True) as reader,
    ):
        got = drain(consumer, len(inputs))
        processor.begin()
        for message in got:
            processor.produce(sink, message.value.upper(), b"k")
        processor.commit_with(consumer)
        assert sorted(values(drain(reader, len(inputs)))) == sorted(v.upper() for v in inputs)

        processor.begin()
        processor.produce(sink, b"aborted", b"k")
        processor.flush()
        processor.abort()
        processor.begin()
        processor.produce(sink, b"after", b"k")  # same key, same partition as the aborted one
        processor.commit_with(consumer)
        assert values(drain(reader, 1)) == [b"after"]
        assert reader.poll(10, timeout=1.0) == []

    # The consumer's offsets were committed with the first transaction.
    with bus.producer() as producer, bus.consumer([source], group) as again:
        publish(producer, source, [b"sentinel"])
        assert values(drain(again, 1)) == [b"sentinel"]
    processor.close()


def test_a_new_producer_of_a_transactional_id_fences_the_old_one_and_aborts_its_transaction(
    bus: Bus,
) -> None:
    """A restarted service takes its predecessor's transactional id: the predecessor's open
    transaction is aborted at once (no read_committed reader waits for it) and the predecessor
    can never commit again."""
    source, sink = unique("source"), unique("sink")
    bus.ensure_topics({source: 1, sink: 1})
    group, transactional_id = unique("group"), unique("tx")
    with bus.producer() as producer:
        publish(producer, source, [b"a", b"b"])
    old = bus.transactional_producer(transactional_id)
    with (
        bus.consumer([source], group) as consumer,
        bus.consumer([sink], unique("reader"), read_committed=True) as reader,
    ):
        got = drain(consumer, 2)
        old.begin()
        old.produce(sink, b"zombie", b"k")
        old.flush()  # on the broker, in a transaction left open
        new = bus.transactional_producer(transactional_id)
        new.begin()
        new.produce(sink, b"after", b"k")  # same partition: stuck behind an open transaction
        new.commit_with(consumer)
        started = time.monotonic()
        assert values(drain(reader, 1, timeout=60)) == [b"after"]
        assert time.monotonic() - started < 30  # not the transaction timeout (120 s)
        with pytest.raises(BusFenced, match=transactional_id):
            old.produce(sink, b"late", b"k")
            old.commit_with(consumer)
        assert reader.poll(10, timeout=1.0) == []
        assert len(got) == 2
    new.close()
    old.close()  # nothing to deliver: no error, no wait


@pytest.mark.kafka
def test_unreachable_kafka_raises_bus_unavailable_after_the_timeout() -> None:
    from streamfit.bus._kafka import KafkaBus

    bus = KafkaBus("127.0.0.1:1", {}, connect_timeout=1.5)  # lazy: no error yet
    started = time.monotonic()
    with pytest.raises(BusUnavailable, match="not reachable"):
        bus.producer()
    assert 1.0 <= time.monotonic() - started < 10


def test_a_broadcast_consumer_can_replay_the_last_messages_of_each_partition(bus: Bus) -> None:
    name = unique("replay")
    bus.ensure_topics({name: 1})
    with bus.producer() as producer:
        publish(producer, name, [b"1", b"2", b"3", b"4", b"5"])
    with bus.consumer([name], group=None, replay=2) as tail:
        assert values(drain(tail, 2)) == [b"4", b"5"]
        with bus.producer() as producer:
            publish(producer, name, [b"6"])
        assert values(drain(tail, 1)) == [b"6"]  # and goes on from there
    with bus.consumer([name], group=None, replay=100) as everything:  # no more than there is
        assert values(drain(everything, 6, timeout=5)) == [b"1", b"2", b"3", b"4", b"5", b"6"]
    with bus.consumer([name], group=None) as fresh:  # by default: only what comes next
        assert fresh.poll(10, timeout=1) == []

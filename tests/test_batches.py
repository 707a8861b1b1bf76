"""No message can stop a service: the batch-isolation policy every consumer loop uses."""

from __future__ import annotations

import doctest

import pytest

from streamfit.bus import MemoryBus, Message, Producer
from streamfit.ops import batches


def _batch(*values: bytes) -> list[Message]:
    return [Message("t", value, offset=i) for i, value in enumerate(values)]


def _echo_then_parse(messages: list[Message], producer: Producer) -> None:
    """Produces for every message first, then fails on one it cannot parse."""
    for message in messages:
        producer.produce("out", message.value)
    for message in messages:
        int(message.value)


@pytest.fixture
def memory_bus():
    bus = MemoryBus()
    yield bus
    bus.close()


def test_a_good_batch_is_handled_once_as_a_whole(memory_bus):
    out = memory_bus.consumer(["out"], group=None)
    calls: list[int] = []

    def handle(messages: list[Message], producer: Producer) -> None:
        calls.append(len(messages))
        _echo_then_parse(messages, producer)

    with memory_bus.producer() as producer:
        assert batches.handle_isolating(_batch(b"1", b"2"), handle, producer, print) == 0
    assert calls == [2]
    assert [m.value for m in out.poll(10, timeout=1)] == [b"1", b"2"]


def test_only_the_offender_is_dead_lettered_and_a_failed_attempt_sends_nothing(memory_bus):
    out = memory_bus.consumer(["out"], group=None)
    dead: list[tuple[int, str]] = []
    with memory_bus.producer() as producer:
        failed = batches.handle_isolating(
            _batch(b"1", b"\xed\xa0\x80", b"3", b"oops"),
            _echo_then_parse,
            producer,
            lambda m, reason: dead.append((m.offset, reason)),
        )
    assert failed == 2
    # Each good message answered exactly once: neither the failed batch attempt nor the
    # failed single attempts left output behind.
    assert [m.value for m in out.poll(10, timeout=1)] == [b"1", b"3"]
    assert [offset for offset, _ in dead] == [1, 3]
    assert all(reason.startswith("unexpected error: ValueError: ") for _, reason in dead)
    assert "oops" in dead[1][1]  # the exception's own text travels with the dead letter


def test_a_failing_dead_letter_is_not_swallowed(memory_bus):
    def refuse(message: Message, reason: str) -> None:
        raise ConnectionError("transport down")

    with memory_bus.producer() as producer, pytest.raises(ConnectionError):
        batches.handle_isolating(_batch(b"x"), _echo_then_parse, producer, refuse)


def test_doctest():
    result = doctest.testmod(batches)
    assert result.attempted > 0 and result.failed == 0

"""Kafka transactions through a broker outage: what the exactly-once predictor relies on."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from streamfit.bus import TransactionAborted, get_bus
from streamfit.bus._kafka import _bounded
from tests.bus.test_contract import drain, publish, unique, values
from tests.conftest import REPO

KAFKA = REPO / "scripts" / "kafka"


def test_a_call_past_its_bound_is_left_running_and_the_caller_goes_on() -> None:
    release = threading.Event()
    started = time.monotonic()
    assert isinstance(_bounded(release.wait, (60,), 0.5, "blocked"), TimeoutError)
    assert time.monotonic() - started < 5
    release.set()
    raised = _bounded(_raise, (ValueError("raised there"),), 5, "raising")
    assert isinstance(raised, ValueError) and str(raised) == "raised there"
    assert raised.__traceback__ is None  # its frames would keep the call's objects alive
    assert _bounded(time.sleep, (0,), 5, "returning") is None


def _raise(exc: Exception) -> None:
    raise exc


@pytest.mark.kafka
def test_a_transaction_cut_by_a_broker_outage_is_dropped_and_its_input_answered_once_after(
    kafka_bootstrap: str,
) -> None:
    """The broker goes away mid-transaction: the commit fails and the transaction is dropped
    (its producer left behind for a new one of the same id), not retried. Once the broker is
    back, the producer is initialised again and a new consumer reads the input again from the
    committed offsets: a read_committed reader sees each answer once."""
    bus = get_bus(f"kafka://{kafka_bootstrap}")
    source, sink = unique("source"), unique("sink")
    bus.ensure_topics({source: 1, sink: 1})
    group = unique("group")
    with bus.producer() as producer:
        publish(producer, source, [b"a", b"b"])
    processor = bus.transactional_producer(unique("tx"))
    consumer = bus.consumer([source], group, instance_id="worker")
    got = drain(consumer, 2)
    processor.begin()
    for message in got:
        processor.produce(sink, message.value.upper(), b"k")
    subprocess.run([KAFKA, "down"], check=True, timeout=120)
    try:
        started = time.monotonic()
        with pytest.raises(TransactionAborted, match="a new producer takes over"):
            processor.commit_with(consumer)
        assert time.monotonic() - started < 60  # its timeout and margin, not for ever
        consumer.close()
    finally:
        subprocess.run([KAFKA, "up"], check=True, timeout=300)
    processor.init()
    with (
        bus.consumer([source], group, instance_id="worker") as again,
        bus.consumer([sink], unique("reader"), read_committed=True) as reader,
    ):
        redelivered = drain(again, 2, timeout=60)
        assert values(redelivered) == [b"a", b"b"]
        processor.begin()
        for message in redelivered:
            processor.produce(sink, message.value.upper(), b"k")
        processor.commit_with(again)
        assert values(drain(reader, 2, timeout=60)) == [b"A", b"B"]
        assert reader.poll(10, timeout=2.0) == []
    processor.close()
    bus.close()

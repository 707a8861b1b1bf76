"""The least a correct at-least-once predictor does, on plain confluent-kafka: the yardstick of
``benchmarks/predictor.py`` (``noop_per_s``, ``e2e_vs_noop``).

Per batch of up to ``--max-batch`` requests (the first waited for, then what has arrived): decode
each request's id, produce a fixed answer keyed by it, flush (every answer acknowledged), commit
the consumed offsets. No model, no
validation, no observation: what is left is the broker round trips and JSON. Same client
settings as streamfit's own producer and consumer (idempotent, acks=all, lz4), so the ratio
measures streamfit's work, not a configuration difference.

    python benchmarks/noop_loop.py --bootstrap 127.0.0.1:9092 --requests R --predictions P --group G
"""

from __future__ import annotations

import argparse
import signal
import sys

import orjson
from confluent_kafka import Consumer, Producer

from streamfit.bus._kafka import _CONSUMER_DEFAULTS, _PRODUCER_DEFAULTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--requests", required=True, help="topic to consume")
    parser.add_argument("--predictions", required=True, help="topic to answer on")
    parser.add_argument("--group", required=True)
    parser.add_argument("--max-batch", type=int, default=1000)
    args = parser.parse_args(argv)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    common = {"bootstrap.servers": args.bootstrap}
    consumer = Consumer(
        {
            **common,
            **_CONSUMER_DEFAULTS,
            "enable.auto.offset.store": True,  # commit() takes what consume() returned
            "group.id": args.group,
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer({**common, **_PRODUCER_DEFAULTS})
    consumer.subscribe([args.requests])
    print("noop loop consuming", flush=True)
    loads, produce, topic = orjson.loads, producer.produce, args.predictions
    while running:
        # Wait for the first request only, then take what else has arrived, as the predictor
        # does: consume(n, timeout) alone would hold every request until n arrive or the
        # timeout passes (200 ms of latency at a low rate).
        first = consumer.poll(0.2)
        if first is None:
            continue
        batch = [first, *consumer.consume(args.max_batch - 1, 0)] if args.max_batch > 1 else [first]
        answered = 0
        for message in batch:
            if message.error():
                continue
            answered += 1
            request_id = loads(message.value())["request_id"]
            answer = b'{"request_id":"%s","probability":0.5,"label":0,"model_version":0}' % (
                request_id.encode()
            )
            produce(topic, answer, message.key())
        if answered:
            producer.flush()
            consumer.commit(asynchronous=False)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

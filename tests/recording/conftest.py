"""A recorder on the real broker with topics and a consumer group of the test's own, over each
store back end (SQLite, the real PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamfit.bus import Bus, get_bus
from streamfit.config import Settings, Topics
from streamfit.recording import Recorder
from streamfit.stores import ObservationStore
from tests.conftest import REPO


class Stream:
    """Topics, a group and a store of one test; a producer, readers and recorders on them."""

    def __init__(self, root: Path, bootstrap: str, store_url: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.root = root
        self.topics = Topics(**{name: f"{name}-{suffix}" for name in vars(Topics())})
        self.settings = Settings(
            data_dir=root / "data",
            bus=f"kafka://{bootstrap}",
            topics=self.topics,
            store=store_url,
            recorder_group=f"recorders-{suffix}",
            retrain_every=10,
            max_batch=50,
        )
        self.bus: Bus = get_bus(self.settings.bus)
        partitions = {name: 1 for name in vars(self.topics).values()}
        partitions[self.topics.requests] = partitions[self.topics.predictions] = 3
        self.bus.ensure_topics(partitions)
        self.store = ObservationStore(store_url)
        self.producer = self.bus.producer()
        self._threads: list[tuple[Recorder, threading.Thread]] = []
        self.processes: list[subprocess.Popen] = []

    def send(self, topic: str, *values: bytes, key: str | None = None) -> None:
        for value in values:
            self.producer.produce(getattr(self.topics, topic), value, _key(key, value))
        self.producer.flush()

    def start(self, **changes: object) -> Recorder:
        """A recorder in a thread of this process."""
        recorder = Recorder(self.settings.replace(**changes), self.bus)
        thread = threading.Thread(target=recorder.run, daemon=True)
        thread.start()
        assert recorder.ready.wait(60), "recorder did not start"
        self._threads.append((recorder, thread))
        return recorder

    def stop(self) -> None:
        for recorder, thread in self._threads:
            recorder.stop()
            thread.join(timeout=30)
        self._threads.clear()

    def start_process(self, *args: str) -> subprocess.Popen:
        """``streamfit recorder`` as a process of its own, configured like this stream."""
        config = self.root / "streamfit.toml"
        topics = "\n".join(f'{k} = "{v}"' for k, v in vars(self.topics).items())
        config.write_text(
            f'data_dir = "{self.settings.data_dir}"\nbus = "{self.settings.bus}"\n'
            f'store = "{self.settings.store}"\nrecorder_group = "{self.settings.recorder_group}"\n'
            f"[topics]\n{topics}\n"
        )
        log = (self.root / f"recorder-{len(self.processes)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "streamfit.cli", "recorder", "--config", str(config), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        process.log_path = log.name  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def log(self, process: subprocess.Popen) -> str:
        return Path(process.log_path).read_text()  # type: ignore[attr-defined]

    def read(self, topic: str, count: int, quiet: float = 1.0) -> list[dict]:
        """Every message on ``topic`` from the beginning: wait for ``count`` of them, then for
        ``quiet`` seconds without any more (so a duplicate would be seen)."""
        consumer = self.bus.consumer([getattr(self.topics, topic)], group=uuid.uuid4().hex)
        out: list[dict] = []
        try:
            deadline = time.monotonic() + 60
            while len(out) < count:
                assert time.monotonic() < deadline, f"{len(out)} of {count} on {topic}: {out}"
                out += [orjson.loads(m.value) for m in consumer.poll(500, timeout=0.5)]
            while batch := consumer.poll(500, timeout=quiet):
                out += [orjson.loads(m.value) for m in batch]
        finally:
            consumer.close()
        return out

    def close(self) -> None:
        self.stop()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.producer.close()
        self.store.close()
        self.bus.close()


def _key(key: str | None, value: bytes) -> bytes | None:
    """``key``, else the message's request_id as the app would key it (None if unreadable)."""
    if key is None:
        try:
            key = orjson.loads(value).get("request_id")
        except (orjson.JSONDecodeError, AttributeError):
            return None
    return key.encode() if isinstance(key, str) else None


@pytest.fixture
def stream(tmp_path: Path, kafka_bootstrap: str, store_url: str) -> Iterator[Stream]:
    stream = Stream(tmp_path, kafka_bootstrap, store_url)
    yield stream
    stream.close()

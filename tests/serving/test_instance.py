"""A group member's stable id (its group.instance.id, and an exactly-once predictor's
transactional id): the same for a process and its replacement, different for two processes
alive at once; two that share one anyway: the fenced one stops with a message naming the setting
to change."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from streamfit import messages
from streamfit.bus import BusFenced, MemoryBus
from streamfit.ops.instance import InstanceSlot, default_instance
from streamfit.serving import Predictor
from tests.conftest import REPO

_HOLD = """
import sys, time
from pathlib import Path
from streamfit.ops.instance import InstanceSlot
with InstanceSlot(Path(sys.argv[1]), "group") as slot:
    print(slot.stable_id, flush=True)
    time.sleep(600)
"""


def test_the_default_instance_is_the_same_for_one_data_directory_and_differs_for_another(
    tmp_path,
):
    assert default_instance(tmp_path / "a") == default_instance(tmp_path / "a")
    assert default_instance(tmp_path / "a") != default_instance(tmp_path / "b")
    with InstanceSlot(tmp_path / "a", "g") as a, InstanceSlot(tmp_path / "b", "g") as b:
        assert a.slot == b.slot == 0
        assert a.stable_id != b.stable_id


def test_a_sigkilled_processs_slot_goes_to_its_replacement(tmp_path):
    """The lock dies with the process: the next predictor takes the same slot, so the same
    transactional id, while a predictor alive beside it gets another."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        held = holder.stdout.readline().strip()
        assert held.endswith("-0"), held
        with InstanceSlot(tmp_path, "group") as beside:
            assert beside.slot == 1  # alive at once: never the same id
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with InstanceSlot(tmp_path, "group") as replacement:
        assert replacement.stable_id == held


def test_an_explicit_instance_id_names_the_stable_id(tmp_path):
    with InstanceSlot(tmp_path, "predictors", "pod-3") as slot:
        assert slot.stable_id == "predictors-pod-3-0"
    with pytest.raises(RuntimeError, match="not held"):
        _ = slot.stable_id


def test_two_live_predictors_sharing_an_instance_id_the_fenced_one_stops_and_says_why(
    settings, store, requests_data, tmp_path
):
    bus = MemoryBus()
    twins = settings.replace(guarantee="exactly-once", instance_id="twin")
    raised: dict[str, BaseException] = {}

    def start(name: str) -> tuple[Predictor, threading.Thread]:
        predictor = Predictor(twins.replace(data_dir=tmp_path / name), bus)

        def run() -> None:
            try:
                predictor.run()
            except BaseException as exc:  # what the CLI would print, with exit code 2
                raised[name] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert predictor.ready.wait(60)
        return predictor, thread

    first, first_thread = start("first")
    second, second_thread = start("second")  # on another data directory, same instance id
    try:
        assert first.stable_id == second.stable_id == f"{twins.group}-twin-0"
        with bus.producer() as producer:
            deadline = time.monotonic() + 30
            for i in range(10_000):
                producer.produce(
                    twins.topics.requests, messages.request(f"r{i}", requests_data[i % 60])
                )
                first_thread.join(0.05)
                if not first_thread.is_alive() or time.monotonic() > deadline:
                    break
        assert not first_thread.is_alive(), "the fenced predictor went on"
        error = raised["first"]
        assert isinstance(error, BusFenced)
        assert f"{twins.group}-twin-0" in str(error) and "--instance-id" in str(error)
        assert second_thread.is_alive() and "second" not in raised
    finally:
        second.stop()
        second_thread.join(10)
        first.stop()

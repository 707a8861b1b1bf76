"""The recorder over the real broker, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import sqlalchemy as sa

from streamfit import messages
from streamfit.bus import BusFenced
from streamfit.recording import Recorder
from streamfit.stores import ObservationBatch, ObservationStore
from tests.harness import wait_until
from tests.recording.conftest import Stream
from tests.stores.conftest import Cut

pytestmark = pytest.mark.kafka


def _request(request_id: str, age: int = 35) -> bytes:
    return messages.request(request_id, {"age": age, "workclass": "Private"})


def _parts(request_id: str) -> dict[str, tuple[str, bytes]]:
    return {
        "request": ("requests", _request(request_id)),
        "prediction": ("predictions", messages.prediction(request_id, 0.3, 1)),
        "label": ("labels", messages.label(request_id, 1)),
    }


_FIELD = {"request": "data", "prediction": "probability", "label": "label"}


def test_requests_predictions_and_labels_join_in_all_three_orders(stream: Stream) -> None:
    orders = {
        "o1": ("request", "prediction", "label"),
        "o2": ("label", "request", "prediction"),
        "o3": ("prediction", "label", "request"),
    }
    stream.start()
    for step in range(3):
        for request_id, order in orders.items():
            stream.send(*_parts(request_id)[order[step]])
        for request_id, order in orders.items():
            field = _FIELD[order[step]]
            wait_until(
                lambda r=request_id, f=field: (stream.store.get(r) or {}).get(f) is not None,
                60,
                f"{order[step]} of {request_id}",
                every=0.05,
            )
    for request_id in orders:
        row = stream.store.get(request_id)
        assert row is not None
        assert (row["data"], row["probability"], row["model_version"], row["label"]) == (
            _request(request_id),
            0.3,
            1,
            1,
        )
    assert stream.store.count(labelled=True) == 3 and stream.store.pending_labels() == 0


def test_duplicates_count_once_and_a_retrain_goes_out_at_each_threshold(stream: Stream) -> None:
    stream.start()  # retrain every 10 labelled observations
    ids = [f"d{i}" for i in range(35)]
    for _ in range(2):  # every message delivered twice
        stream.send("requests", *(_request(i) for i in ids))
        stream.send("predictions", *(messages.prediction(i, 0.5, 1) for i in ids))
        stream.send("labels", *(messages.label(i, i.endswith("1")) for i in ids))
    wait_until(lambda: stream.store.count(labelled=True) == 35, 60, "35 labelled", every=0.05)
    wait_until(lambda: stream.store.unsent() == 0, 60, "the outbox delivered", every=0.05)
    assert stream.store.count() == 35 and stream.store.pending_labels() == 0
    commands = stream.read("retrain", 3)
    assert [c["threshold"] for c in commands] == [10, 20, 30]
    assert all(
        c["reason"] == "every_n_labelled" and c["labelled"] >= c["threshold"] for c in commands
    )
    more = [f"e{i}" for i in range(5)]
    stream.send("requests", *(_request(i, 60) for i in more))
    stream.send("labels", *(messages.label(i, 0) for i in more))
    wait_until(lambda: stream.store.count(labelled=True) == 40, 60, "40 labelled", every=0.05)
    assert [c["threshold"] for c in stream.read("retrain", 4)] == [10, 20, 30, 40]
    assert stream.store.retrain_mark() == 4


def test_labels_for_unseen_requests_stay_pending_and_visible(stream: Stream) -> None:
    stream.start()
    stream.send("labels", *(messages.label(f"ghost{i}", 1) for i in range(3)))
    wait_until(lambda: stream.store.pending_labels() == 3, 60, "3 pending labels", every=0.05)
    assert stream.store.count() == 0 and stream.store.count(labelled=True) == 0
    stream.send("requests", _request("ghost1"))
    wait_until(lambda: stream.store.count(labelled=True) == 1, 60, "ghost1 joined", every=0.05)
    assert stream.store.pending_labels() == 2
    assert stream.read("dead_letter", 0, quiet=0.5) == []  # pending is not an error


def test_a_bad_label_and_a_bad_request_are_dead_lettered_with_the_reason(stream: Stream) -> None:
    recorder = stream.start()
    stream.send("labels", b'{"request_id": "b1", "label": "maybe"}', key="b1")
    stream.send("requests", b'{"request_id": "b2", "data": {"age": "old"}}', key="b2")
    stream.send("requests", b"\xff not even UTF-8", key="b3")
    stream.send("requests", _request("good"))
    stream.send("labels", messages.label("good", 0))
    wait_until(lambda: stream.store.count(labelled=True) == 1, 60, "the good one", every=0.05)
    letters = sorted(stream.read("dead_letter", 3), key=lambda d: d.get("request_id", "~"))
    assert [d.get("request_id") for d in letters] == ["b1", "b2", None]
    assert "'label' must be '<=50K' or '>50K' (or 1 for" in letters[0]["error"]
    assert "'age'" in letters[1]["error"] and letters[1]["error"].startswith("invalid request")
    assert letters[2]["error"] == "invalid request: invalid UTF-8 at byte 0"
    assert {d["service"] for d in letters} == {"recorder"}
    assert stream.store.get("b1") is None and stream.store.get("b2") is None
    wait_until(lambda: recorder.stats.dead_letters == 3, 60, "the recorder's count", every=0.05)


def test_an_offender_the_database_refuses_is_dead_lettered_alone(stream: Stream) -> None:
    # All in place before the recorder starts: one batch, one failing transaction.
    stream.send("requests", *(_request(f"k{i}") for i in range(5)))
    stream.send("predictions", messages.prediction("k0", 0.5, 2**63))  # beyond any integer
    stream.send("predictions", *(messages.prediction(f"k{i}", 0.5, 1) for i in range(1, 5)))
    recorder = stream.start()
    wait_until(
        lambda: recorder.stats.dead_letters == 1, 60, "the offender dead-lettered", every=0.05
    )
    (letter,) = stream.read("dead_letter", 1)
    assert letter["request_id"] == "k0" and letter["error"].startswith(
        "unexpected error: StoreError"
    )
    wait_until(lambda: stream.store.count() == 5, 60, "every request", every=0.05)
    assert stream.store.get("k0")["probability"] is None
    assert all(stream.store.get(f"k{i}")["model_version"] == 1 for i in range(1, 5))


def test_two_recorders_in_one_group_share_the_work(stream: Stream) -> None:
    first, second = stream.start(), stream.start()
    ids = [f"s{i}" for i in range(60)]
    stream.send("requests", *(_request(i) for i in ids))
    stream.send("predictions", *(messages.prediction(i, 0.5, 1) for i in ids))
    stream.send("labels", *(messages.label(i, 1) for i in ids))
    wait_until(lambda: stream.store.count(labelled=True) == 60, 60, "60 labelled", every=0.05)
    wait_until(lambda: stream.store.unsent() == 0, 60, "the outbox delivered", every=0.05)
    assert sorted(c["threshold"] for c in stream.read("retrain", 6)) == list(range(10, 61, 10))
    assert first.stats.requests + second.stats.requests >= 60


def test_a_recorder_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    stream: Stream,
) -> None:
    """SIGKILL of a ``streamfit recorder`` process in the middle of the stream, then a new one:
    every row is there, the labelled count is exact, each threshold's retrain went out once."""
    total, every = 400, 25
    ids = [f"m{i}" for i in range(total)]
    first_half, second_half = ids[:240], ids[240:]

    def send(chunk: list[str]) -> None:
        stream.send("labels", *(messages.label(i, 1) for i in chunk[:40]))  # some labels first
        stream.send("requests", *(_request(i) for i in chunk))
        stream.send("predictions", *(messages.prediction(i, 0.5, 1) for i in chunk))
        stream.send("labels", *(messages.label(i, 0) for i in chunk[40:]))
        stream.send("labels", *(messages.label(i, 1) for i in chunk[::7]))  # duplicates

    send(first_half)
    args = ("--retrain-every", str(every), "--max-batch", "20")
    first = stream.start_process(*args)
    wait_until(
        lambda: stream.store.count(labelled=True) >= 60, 120, "a first part recorded", every=0.05
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert "recorder stopped" not in stream.log(first)  # killed, not stopped
    send(second_half)
    second = stream.start_process(*args)
    wait_until(lambda: _complete(stream) == total, 180, f"{total} complete rows", every=0.05)
    wait_until(lambda: stream.store.unsent() == 0, 60, "the outbox delivered", every=0.05)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, stream.log(second)
    store = stream.store
    assert (store.count(), store.count(labelled=True), store.pending_labels()) == (total, total, 0)
    # The first label of each id won (40 per half were 1; the later duplicates changed nothing).
    assert store.labelled_frame()["label"].sum() == 80
    commands = stream.read("retrain", total // every)
    assert [c["threshold"] for c in commands] == list(range(every, total + 1, every))
    assert store.retrain_mark() == total // every


def _complete(stream: Stream) -> int:
    """Rows with request, prediction and label."""
    return int(stream.store.labelled_outcomes()["probability"].notna().sum())


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("where", ["COMMIT", "UPDATE outbox"])
def test_a_connection_cut_while_recording_or_delivering_is_waited_out(
    stream: Stream, postgres_url: str, where: str
) -> None:
    """PostgreSQL cuts the recorder's connection (a server restarting): at the batch's commit,
    or while the outbox is being marked sent after the commit. Either way the recorder says the
    store is unavailable, waits, and carries on: every observation recorded once, the retrain
    command published (again, if the cut came after the broker had it: at-least-once)."""
    recorder = stream.start()  # retrain every 10 labelled observations
    admin = sa.create_engine(postgres_url)
    cut = Cut(recorder.store.engine, admin, where)
    ids = [f"c{i}" for i in range(10)]
    for kind in ("request", "prediction", "label"):
        topic = _parts(ids[0])[kind][0]
        stream.send(topic, *(_parts(i)[kind][1] for i in ids))
    try:
        wait_until(lambda: recorder.stats.retrains_sent == 1, 60, "the retrain command sent")
    finally:
        admin.dispose()
    assert cut.done and recorder.stats.store_retries >= 1
    assert recorder.health.alive and recorder.running
    assert _complete(stream) == stream.store.count(labelled=True) == 10
    assert {c["threshold"] for c in stream.read("retrain", 1)} == {10}


def test_a_starting_recorder_first_delivers_what_was_left_unsent(stream: Stream) -> None:
    """A predecessor committed a threshold and died before delivering its command."""
    from streamfit.stores import ObservationBatch

    batch = ObservationBatch(
        requests=[(f"u{i}", _request(f"u{i}")) for i in range(10)],
        labels=[(f"u{i}", 1) for i in range(10)],
    )
    outcome = stream.store.record(
        batch,
        every=10,
        command=lambda t, n: (stream.topics.retrain, messages.retrain("every_n_labelled", n, t)),
    )
    assert outcome.thresholds == [10] and stream.store.unsent() == 1
    started = stream.start()
    assert started.stats.retrains_sent == 1 and stream.store.unsent() == 0
    assert [c["threshold"] for c in stream.read("retrain", 1)] == [10]


def test_two_live_recorders_given_one_instance_id_the_older_stops_and_says_why(
    stream: Stream, tmp_path
) -> None:
    """Another data directory (another host, say), the same ``instance_id``: the same group
    member id. Kafka fences the older member, which stops with the line the CLI prints."""
    twins = stream.settings.replace(instance_id="twin")
    older = Recorder(twins.replace(data_dir=tmp_path / "older"), stream.bus)
    raised: list[BusFenced] = []

    def run() -> None:
        try:
            older.run()
        except BusFenced as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: older.health.ready, 60, "the older recorder in its group", every=0.05)
    newer = stream.start(instance_id="twin", data_dir=tmp_path / "newer")
    thread.join(60)
    assert not thread.is_alive(), "the fenced recorder went on"
    (error,) = raised
    assert "another recorder took over id" in str(error) and "--instance-id" in str(error)
    assert f"{twins.recorder_group}-twin-0" in str(error)
    assert newer.running


def test_rows_older_than_retain_go_at_the_next_pass_while_recording_goes_on(
    stream: Stream,
) -> None:
    old = time.time() - 3 * 86400
    ids = [f"old{i}" for i in range(300)]
    # written with hour-wide partitions (PostgreSQL): a store that kept everything makes 30-day
    # ones, which a retention set later drops whole, once they are all older than it
    seeding = ObservationStore(stream.settings.store_url, partition_seconds=3600)
    seeding.record(
        ObservationBatch(
            requests=[(i, _request(i)) for i in ids],
            labels=[(i, 1) for i in [*ids, "old-pending"]],
        ),
        now=old,
    )
    seeding.close()
    stream.start(retain="1d")  # retrain every 10 labelled
    new = [f"new{i}" for i in range(100)]
    for chunk in (new[:50], new[50:]):
        stream.send("requests", *(_request(i) for i in chunk))
        stream.send("labels", *(messages.label(i, 0) for i in chunk))
    wait_until(lambda: stream.store.count(labelled=True) == 400, 60, "400 labelled", every=0.05)
    wait_until(lambda: stream.store.size()[0] == 100, 60, "the old rows gone", every=0.05)
    assert all(stream.store.get(i)["label"] == 0 for i in new)
    assert stream.store.pending_labels() == 0 and stream.store.retrain_mark() == 40
    wait_until(lambda: stream.store.unsent() == 0, 60, "the outbox delivered", every=0.05)
    assert [c["threshold"] for c in stream.read("retrain", 40)] == list(range(10, 401, 10))

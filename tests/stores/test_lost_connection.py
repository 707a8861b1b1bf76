"""A PostgreSQL connection cut mid-transaction (a server restarting, a proxy dropping it), on the
real server: whatever statement it cuts, the commit included, the store raises
:class:`StoreUnavailable` (what the recorder waits out; anything else would be dead-lettered as a
message's fault, or end retention's thread), nothing of the transaction is committed, and the
same batch recorded again afterwards counts once. The connection is cut the way a server
restart cuts it: its backend terminated (``pg_terminate_backend``) from another connection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from streamfit import messages
from streamfit.config import Retention
from streamfit.stores import ObservationBatch, ObservationStore, StoreUnavailable
from tests.stores.conftest import Cut

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_schema_url: str) -> Iterator[ObservationStore]:
    store = ObservationStore(postgres_schema_url)
    yield store
    store.close()


def _labelled(n: int) -> ObservationBatch:
    ids = [f"r{i}" for i in range(n)]
    return ObservationBatch(
        requests=[(i, messages.request(i, {"age": 40})) for i in ids],
        predictions=[(i, 0.5, 1) for i in ids],
        labels=[(i, 1) for i in ids],
    )


def _command(threshold: int, labelled: int) -> tuple[str, bytes]:
    return "retrain", messages.retrain("every_n_labelled", labelled, threshold)


@pytest.mark.parametrize(
    "where",
    [
        "PARTITION OF",  # making the batch's partition, before the transaction
        "set_config",  # after the COPY into the staging table
        "INSERT INTO outbox",  # queueing the retrain command
        "UPDATE observation_marks",  # moving the retrain mark
        "COMMIT",
    ],
)
def test_a_connection_cut_mid_transaction_is_unavailable_and_commits_nothing(
    store: ObservationStore, admin: sa.Engine, where: str
) -> None:
    cut = Cut(store.engine, admin, where)
    with pytest.raises(StoreUnavailable):
        store.record(_labelled(10), every=5, command=_command)
    assert cut.done
    assert (store.count(), store.count(labelled=True), store.retrain_mark()) == (0, 0, 0)
    assert store.unsent() == 0
    outcome = store.record(_labelled(10), every=5, command=_command)  # the batch comes again
    assert (outcome.labelled, outcome.thresholds) == (10, [5, 10])
    assert (store.count(), store.count(labelled=True), store.unsent()) == (10, 10, 2)


def test_a_connection_cut_while_sending_the_outbox_leaves_it_unsent(
    store: ObservationStore, admin: sa.Engine
) -> None:
    store.record(_labelled(5), every=5, command=_command)
    Cut(store.engine, admin, "UPDATE outbox")
    with pytest.raises(StoreUnavailable), store.sending() as unsent:
        assert [m.key for m in unsent] == [b"5"]
    assert store.unsent() == 1  # handed out again: delivered at least once
    with store.sending() as unsent:
        assert [m.key for m in unsent] == [b"5"]
    assert store.unsent() == 0


def test_a_connection_cut_during_retention_is_unavailable(
    store: ObservationStore, admin: sa.Engine
) -> None:
    """What the recorder's retention thread catches (a StoreError), and then tries again."""
    store.record(_labelled(3))
    year = Retention(seconds=365 * 86400.0)
    later = time.time() + 40 * 86400  # a pass then makes the next partition: cut there
    Cut(store.engine, admin, "PARTITION OF")
    with pytest.raises(StoreUnavailable):
        store.retain(year, now=later)
    assert store.retain(year, now=later).rows == 0  # the next pass
    assert store.count() == 3

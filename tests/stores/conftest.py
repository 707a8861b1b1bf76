"""What the store tests share: cutting a PostgreSQL connection mid-transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa


class Cut:
    """Terminates the backend of ``engine``'s connection once, just before the first statement
    containing ``where`` runs (``"COMMIT"``: just before a commit)."""

    def __init__(self, engine: sa.Engine, admin: sa.Engine, where: str) -> None:
        self.admin = admin
        self.where = where
        self.done = False
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)

    def _statement(self, db, cursor, statement, parameters, context, many) -> None:
        if self.where in statement:
            self._cut(db)

    def _commit(self, db: sa.Connection) -> None:
        if self.where == "COMMIT":
            self._cut(db)

    def _cut(self, db: sa.Connection) -> None:
        if self.done:
            return
        self.done = True
        pid = db.connection.dbapi_connection.info.backend_pid
        with self.admin.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture
def admin(postgres_url: str) -> Iterator[sa.Engine]:
    """A connection of its own to the server, to terminate a store's backend from."""
    engine = sa.create_engine(postgres_url)
    yield engine
    engine.dispose()

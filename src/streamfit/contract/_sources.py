"""Where a user's table comes from: a CSV or Parquet file, or a database through SQLAlchemy.

Every failure is a :class:`ContractError` of one line that names the source and the problem;
a database URL is shown without its password.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ._contract import ContractError

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".csv.bz2", ".csv.xz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_database_url(source: str) -> bool:
    """``dialect[+driver]://...`` is a database; anything else is a path."""
    return "://" in source


def read_source(
    source: str | Path, table: str | None = None, query: str | None = None
) -> pd.DataFrame:
    """The rows of ``source``: a CSV/Parquet path, or an SQLAlchemy URL with ``table`` or
    ``query``. Column names are strings without surrounding blanks, and there is a row."""
    text = str(source)
    if is_database_url(text):
        frame = _read_sql(text, table, query)
        shown = _hide_password(text)
    else:
        if table is not None or query is not None:
            raise ContractError(f"{text}: --table and --query are for database URLs, not files")
        frame = _read_file(Path(text))
        shown = text
    frame.columns = [str(name).strip() for name in frame.columns]
    repeated = frame.columns[frame.columns.duplicated()]
    if len(repeated):
        raise ContractError(f"{shown}: column {repeated[0]!r} appears twice")
    if frame.empty:
        raise ContractError(f"{shown}: no rows")
    return frame


def _read_file(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        raise ContractError(f"{path}: not a CSV or Parquet file (by its name)")
    if not path.is_file():
        raise ContractError(f"{path}: no such file")
    try:
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(path, engine="pyarrow")
        return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    except pd.errors.EmptyDataError:
        raise ContractError(f"{path}: the file is empty") from None
    except Exception as exc:  # pandas and pyarrow raise many kinds for unreadable files
        raise ContractError(f"{path}: cannot read it ({_first_line(exc)})") from None


def _read_sql(url: str, table: str | None, query: str | None) -> pd.DataFrame:
    import sqlalchemy as sa

    shown = _hide_password(url)
    if (table is None) == (query is None):
        raise ContractError(f"{shown}: give a database source --table NAME or --query SQL")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ContractError(f"{shown}: not an SQLAlchemy URL") from None
    database = parsed.database
    # SQLite would create a missing file, then report no such table.
    sqlite_file = parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
    if sqlite_file and not Path(str(database)).is_file():
        raise ContractError(f"{shown}: no such file {database!r}")
    try:
        engine = sa.create_engine(parsed)
    except Exception as exc:  # an unknown dialect or a driver that is not installed
        raise ContractError(f"{shown}: cannot open it ({_first_line(exc)})") from None
    try:
        with engine.connect() as connection:
            if table is not None:
                if not sa.inspect(connection).has_table(table):
                    raise ContractError(f"{shown}: no table {table!r}")
                return pd.read_sql_table(table, connection)
            return pd.read_sql_query(sa.text(query), connection)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause: BaseException = exc
        if isinstance(cause, pd.errors.DatabaseError) and cause.__cause__ is not None:
            cause = cause.__cause__  # pandas wraps SQLAlchemy's error in its own
        if isinstance(cause, sa.exc.DBAPIError):
            cause = cause.orig  # the driver's own words, without SQLAlchemy's long tail
        raise ContractError(f"{shown}: SQL error ({_first_line(cause)})") from None
    finally:
        engine.dispose()


def _hide_password(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

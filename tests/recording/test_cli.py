"""``streamfit recorder`` refuses a store it cannot use in one clear line."""

from __future__ import annotations

import pytest

from streamfit.cli import main


def test_a_store_url_that_is_not_sqlite_or_postgresql_is_refused(capsys, tmp_path) -> None:
    code = main(["recorder", "--data-dir", str(tmp_path), "--store", "mysql://db/x"])
    err = capsys.readouterr().err
    assert code == 2 and "store must be an SQLAlchemy URL" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.postgres
def test_a_wrong_postgresql_password_is_one_line_not_a_traceback(
    capsys, tmp_path, postgres_url
) -> None:
    wrong = postgres_url.replace("streamfit:streamfit@", "streamfit:wrong@")
    code = main(["recorder", "--data-dir", str(tmp_path), "--store", wrong])
    err = capsys.readouterr().err
    assert code == 2 and "password authentication failed" in err
    assert ":wrong@" not in err  # the password is not echoed
    assert len(err.strip().splitlines()) == 1


def test_a_retain_it_cannot_read_is_refused_in_one_line(capsys, tmp_path) -> None:
    code = main(["recorder", "--data-dir", str(tmp_path), "--retain", "a week"])
    err = capsys.readouterr().err
    assert code == 2 and "retain must be a duration" in err
    assert len(err.strip().splitlines()) == 1

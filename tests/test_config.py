"""Settings: the bus password comes from a file, and no secret is ever shown."""

from __future__ import annotations

import pytest

from streamfit.config import ConfigError, Retention, Settings

OPTIONS = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "predictor",
}


def test_the_password_file_is_read_once_and_given_to_the_client(tmp_path):
    secret = tmp_path / "predictor.password"
    secret.write_text("s3cr3t-value\n")
    settings = Settings(bus_options=OPTIONS, bus_password_file=str(secret))
    secret.write_text("changed")  # read at start-up, not at each use
    assert settings.bus_client_options() == {**OPTIONS, "sasl.password": "s3cr3t-value"}
    assert settings.bus_options == OPTIONS  # the password is not a bus option
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings)
    assert settings.replace(max_batch=5).bus_password == "changed"  # a new object reads again


def test_secret_bus_options_are_masked(tmp_path):
    options = {
        **OPTIONS,
        "sasl.password": "pw-1",
        "ssl.key.password": "pw-2",
        "sasl.oauthbearer.client.secret": "pw-3",
        "sasl.jaas.config": 'x password="pw-4";',
    }
    shown = repr(Settings(bus_options=options))
    assert not [pw for pw in ("pw-1", "pw-2", "pw-3", "pw-4") if pw in shown], shown
    assert "'sasl.password': '***'" in shown and "'sasl.username': 'predictor'" in shown


def test_the_password_file_from_the_environment(tmp_path):
    secret = tmp_path / "app.password"
    secret.write_text("from-env")
    environ = {"STREAMFIT_BUS_PASSWORD_FILE": str(secret), "STREAMFIT_BUS_PASSWORD": "ignored"}
    settings = Settings.load(environ=environ)
    assert settings.bus_client_options() == {"sasl.password": "from-env"}


@pytest.mark.parametrize(
    ("content", "options", "error"),
    [
        (None, {}, "cannot read it"),
        ("", {}, "is empty"),
        ("pw", {"sasl.password": "other"}, "give the SASL password once"),
    ],
)
def test_a_password_file_that_cannot_be_used_is_a_clear_error(tmp_path, content, options, error):
    secret = tmp_path / "x.password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError, match=error):
        Settings(bus_options=options, bus_password_file=str(secret))


def test_retain_is_a_duration_a_row_count_or_both() -> None:
    assert Settings().retention == Retention()  # keep everything
    loaded = Settings.load(environ={"STREAMFIT_RETAIN": "12h,500000"})
    assert loaded.retention == Retention(seconds=12 * 3600, rows=500_000)
    assert Settings(retain="2w").retention.seconds == 14 * 86400
    for bad in ("7 days", "0", "7d,8d", "-5"):
        with pytest.raises(ConfigError, match="retain must be"):
            Settings(retain=bad)


def test_max_boost_rounds_is_a_bound_or_zero_for_none() -> None:
    assert Settings().max_boost_rounds == 0
    assert Settings.load(environ={"STREAMFIT_MAX_BOOST_ROUNDS": "600"}).max_boost_rounds == 600
    with pytest.raises(ConfigError, match="max_boost_rounds must be >= 0"):
        Settings(max_boost_rounds=-1)

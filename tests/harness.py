"""The tests' one harness: waiting until a condition holds, the registry's champion, a free port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

from streamfit.config import Settings

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    *,
    every: float = 0.2,
    log: Callable[[], str] | None = None,
    process: subprocess.Popen | None = None,
) -> T:
    """Poll ``condition()`` every ``every`` seconds until it is truthy; return its value.

    Past ``timeout`` seconds, fail with ``timed out after {timeout} s waiting for {what}``, and
    the end of ``log()`` (a process's log) when ``log`` is given. With ``process``, fail at once
    when that process has exited while the condition still does not hold."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(_with_log(f"{what}: process exited", log))
        if time.monotonic() >= deadline:
            raise AssertionError(_with_log(f"timed out after {timeout} s waiting for {what}", log))
        time.sleep(every)


def _with_log(message: str, log: Callable[[], str] | None) -> str:
    return message if log is None else f"{message}\n{log()[-3000:]}"


def champion(source: Settings | object) -> int:
    """The version the registry's ``@champion`` points at, 0 when there is none yet.
    ``source``: the settings, or anything with a ``settings`` attribute (a deployment)."""
    from streamfit.models.registry import ModelRegistry

    settings = source if isinstance(source, Settings) else source.settings
    entry = ModelRegistry.from_settings(settings).champion()
    return entry.version if entry else 0


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (free when asked)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

"""A model build dies with the process that started it, gcc included: a predictor that exits
mid-build leaves nothing compiling behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.harness import wait_until

# The parent starts a build-like child in a session of its own, as _compiled does; the child
# starts a long "gcc" (sleep) and waits on it; the parent prints both pids and sleeps.
PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    child = subprocess.Popen(
        [sys.executable, "-c", '''
    import os, subprocess, sys, time
    from streamfit.serving._build import die_with
    die_with(int(sys.argv[1]))
    compiler = subprocess.Popen(["sleep", "600"])
    print(compiler.pid, flush=True)
    compiler.wait()
    ''', str(os.getpid())],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    print(child.pid, child.stdout.readline().strip(), flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for this purpose
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_build_and_its_compiler_die_with_the_process_that_started_them() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    build, compiler = map(int, parent.stdout.readline().split())
    assert _alive(build) and _alive(compiler)
    parent.kill()  # SIGKILL: nothing of the parent's runs on the way out
    parent.wait()
    wait_until(lambda: not _alive(build) and not _alive(compiler), 15, "the build gone")


def test_a_build_lives_while_its_parent_does() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    build, compiler = map(int, parent.stdout.readline().split())
    try:
        time.sleep(3)  # three of the watch's checks of its parent
        assert _alive(build) and _alive(compiler)
    finally:
        os.killpg(build, signal.SIGKILL)
        parent.kill()
        parent.wait()

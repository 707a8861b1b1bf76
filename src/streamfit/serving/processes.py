"""K predictor processes in one consumer group: ``streamfit predictor --processes K``.

One Python process runs one batch loop at a time (the GIL), so a host with cores to spare
scales the predictor by processes. The parent started by ``--processes K`` starts K children,
each an ordinary ``streamfit predictor`` with the same arguments (same group: Kafka splits the
partitions of ``requests`` among them, so at most ``request_partitions`` of them get work), and
then only watches them:

* SIGTERM or SIGINT to the parent is forwarded (SIGTERM) to every child: each finishes its
  batch, flushes and commits, as a single predictor does; the parent exits when all have.
* A child that exits while the parent was not asked to stop stops the others, and the parent
  exits with that child's exit code (1 if it was 0, 128 + N if signal N killed it): a
  supervisor (systemd, Kubernetes) sees the whole set fail and restarts it, instead of a set
  silently running short of a process.
* Child ``i`` serves /metrics, /healthz and /readyz on the parent's metrics port +
  ``PORT_STEP * i`` (9471, 9571, 9671... by default: clear of the other services' defaults,
  9470-9474); metrics port 0 means no endpoint for any of them.

The children share the data directory: its model cache is built for several predictors (a
bundle is fetched into a staging directory and renamed into place, a compiled library likewise).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("streamfit.predictor")

PORT_STEP = 100  # child i's metrics port: the configured one + PORT_STEP * i
_STOP_GRACE_S = 60.0  # how long a stopped child may take to finish its batch before SIGKILL


def child_metrics_port(metrics_port: int, index: int) -> int:
    """The metrics port of child ``index`` (0: no endpoint, for every child)."""
    return metrics_port + PORT_STEP * index if metrics_port else 0


class PredictorProcesses:
    """Start ``count`` children running ``streamfit <args>``; :meth:`run` watches them."""

    def __init__(self, args: Sequence[str], count: int, metrics_port: int) -> None:
        if count < 1:
            raise ValueError(f"--processes must be at least 1, got {count}")
        self.args = list(args)
        self.count = count
        self.metrics_port = metrics_port
        self.children: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()

    def command(self, index: int) -> list[str]:
        """Child ``index``'s command line: the parent's arguments, then the flags that make it
        one process (the last occurrence of a flag wins in argparse)."""
        port = child_metrics_port(self.metrics_port, index)
        return [
            sys.executable,
            "-m",
            "streamfit.cli",
            *self.args,
            *("--processes", "1", "--metrics-port", str(port)),
        ]

    def stop(self) -> None:
        """Ask every child to stop (from a signal handler: it only sets a flag)."""
        self._stop.set()

    def run(self) -> int:
        """Start the children and wait for them; the exit code (see the module docstring)."""
        code = 0
        try:
            for index in range(self.count):
                child = subprocess.Popen(self.command(index))
                self.children.append(child)
                log.info(
                    "predictor process %d of %d: pid %d, metrics port %d",
                    index + 1,
                    self.count,
                    child.pid,
                    child_metrics_port(self.metrics_port, index),
                )
            while not self._stop.is_set():
                exited = [c for c in self.children if c.poll() is not None]
                if exited:
                    child = exited[0]
                    code = _exit_code(child.returncode)
                    log.error(
                        "predictor process pid %d exited with code %d: stopping the others",
                        child.pid,
                        child.returncode,
                    )
                    break
                self._stop.wait(0.2)
        finally:
            self._stop_children()
        return code

    def _stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for child in self.children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("predictor process pid %d did not stop: killed", child.pid)
                child.kill()
                child.wait()


def _exit_code(returncode: int) -> int:
    """A child's exit as the parent's: its code, 128 + N if signal N killed it, 1 if it
    exited 0 unasked (a set short of a process is a failure)."""
    if returncode < 0:
        return 128 - returncode
    return returncode or 1


def run_predictor_processes(args: Sequence[str], count: int, metrics_port: int) -> int:
    """``streamfit predictor --processes K``: run and watch the children, SIGTERM and SIGINT
    forwarded; the exit code of the set."""
    processes = PredictorProcesses(args, count, metrics_port)

    def _stop(signum: int, frame: object) -> None:
        log.info("signal %d: stopping the %d predictor processes", signum, count)
        processes.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return processes.run()

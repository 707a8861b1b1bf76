"""What a streamfit command shows on the user's terminal: its log lines and its progress.

* **Logs.** ``--log-format text`` (default): on a terminal, rich's log lines; elsewhere plain
  ``time level logger: message`` lines. ``--log-format json``: one JSON object per line
  (``time``, ``level``, ``logger``, ``thread``, ``message``, ``exception``) for log shippers.
  ``--log-level`` is streamfit's own level; third-party libraries (MLflow, alembic, SQLAlchemy,
  urllib3...) only get through from WARNING up (from INFO up with ``--log-level DEBUG``), and
  their deprecation warnings not at all unless DEBUG.
* **Progress.** On a terminal with text logs, rich progress bars (:class:`ConsoleProgress`);
  otherwise plain lines (:class:`~streamfit.ops.progress.LineProgress`): printed with text logs,
  logged (one JSON object each) with JSON logs.

Only the command line calls this: it owns the process's terminal and logging. A program that
embeds streamfit and configured logging itself keeps its handlers (:func:`configure_logging`
then only sets levels).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from .progress import LineProgress, Progress

if TYPE_CHECKING:
    from ..contract import Inference

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
log = logging.getLogger("streamfit")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    >>> record = logging.LogRecord("streamfit.x", logging.INFO, "", 0, "v%d up", (3,), None)
    >>> record.created, record.threadName = 0.0, "MainThread"
    >>> JsonFormatter().format(record)
    '{"time": "1970-01-01T00:00:00.000+00:00", "level": "INFO", "logger": "streamfit.x", \
"thread": "MainThread", "message": "v3 up"}'
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


@dataclass
class Terminal:
    """How this process talks to its user: the log format and, on a terminal, a rich console."""

    log_format: str = "text"
    console: Console | None = None  # set when text goes to an interactive terminal
    _handler: logging.Handler | None = field(default=None, repr=False)

    @classmethod
    def detect(cls, log_format: str = "text", stream: IO[str] | None = None) -> Terminal:
        """Rich output only for text logs on an interactive terminal (``stream``, default
        stdout); CI logs, pipes and files get plain lines."""
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
        stream = stream if stream is not None else sys.stdout
        interactive = log_format == "text" and stream.isatty()
        return cls(log_format, Console(file=stream) if interactive else None)

    def say(self, text: str) -> None:
        """A command's own output line (a summary, a result): printed, or logged as JSON."""
        if self.log_format == "json":
            log.info("%s", text)
        elif self.console is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def error(self, text: str) -> None:
        """One clear line for an error the user can fix (stderr, or a JSON record)."""
        if self.log_format == "json":
            log.error("%s", text)
        else:
            print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def progress(self, say: Callable[[str], None] | None = None) -> Iterator[Progress]:
        """Bars on an interactive terminal; elsewhere plain lines through ``say`` (a service's
        logger) or :meth:`say`. For the duration of the ``with`` block."""
        if self.console is None:
            yield LineProgress(say or self.say)
            return
        with ConsoleProgress(self.console) as bars:
            yield bars


def configure_logging(terminal: Terminal, level: str = "INFO") -> None:
    """streamfit's loggers at ``level``, third parties at WARNING (INFO when DEBUG), through
    one handler of the terminal's format; repeated calls replace that handler."""
    name = level.upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_streamfit", False)]
    for handler in ours:
        root.removeHandler(handler)
    if not root.handlers:  # nobody else (an embedding program, pytest) configured logging
        handler = _handler(terminal)
        handler._streamfit = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        terminal._handler = handler
    debug = name == "DEBUG"
    root.setLevel(logging.INFO if debug else logging.WARNING)
    log.setLevel(name)
    # MLflow, alembic and SQLAlchemy set levels of their own: they follow the rest.
    for noisy in ("mlflow", "alembic", "sqlalchemy", "huey", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
    logging.captureWarnings(True)  # warnings become log records, in the same format
    if not debug:
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)


def _handler(terminal: Terminal) -> logging.Handler:
    if terminal.log_format == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif terminal.console is not None:  # above the progress bars, on the same console
        handler = RichHandler(
            console=terminal.console, show_path=False, markup=False, log_time_format="%H:%M:%S"
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, datefmt="%H:%M:%S"))
    return handler


class ConsoleProgress(Progress):
    """rich progress bars, one per task (``trials``, ``sent``, ``answered``); notes print above
    them. Thread-safe: the demo's services report from their own threads."""

    def __init__(self, console: Console) -> None:
        self.bars = RichProgress(
            TextColumn("[bold]{task.description:>9}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ConsoleProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def note(self, text: str) -> None:
        self.bars.console.print(text, markup=False, highlight=False)

    def update(self, task: str, done: int, total: int | None = None, status: str = "") -> None:
        with self._lock:
            if task not in self._tasks:
                self._tasks[task] = self.bars.add_task(task, total=total, status=status)
            task_id = self._tasks[task]
            if done < self.bars.tasks[task_id].completed:  # a new round: start again
                self.bars.reset(task_id, total=total)
            fields = {"status": status} if status else {}
            self.bars.update(task_id, completed=done, total=total, **fields)


def render_status(snapshot: dict[str, Any]) -> Table:
    """One table of ``streamfit.ops.status.snapshot``: a line per service found at each target."""
    table = Table(box=box.SIMPLE_HEAD, expand=False, title="streamfit status", title_justify="left")
    for column in ("target", "service", "state", "model", "details"):
        table.add_column(column, overflow="fold")
    for target in snapshot["targets"]:
        if not target["up"]:
            table.add_row(target["target"], "-", "[red]down", "", target["error"] or "")
            continue
        if not target["services"]:
            table.add_row(target["target"], "-", "[yellow]no streamfit metrics", "", "")
        for service, state in target["services"].items():
            ready = "[green]ready" if state["ready"] else "[yellow]not ready"
            model, details = _STATUS_LINES[service](state)
            table.add_row(target["target"], service, ready, model, details)
    return table


def render_inference(inference: Inference) -> Group:
    """``streamfit contract infer``'s output: the task and rows, then a line per column with
    the decision taken and why; columns dropped by a rule stand out."""
    table = Table(box=box.SIMPLE_HEAD, expand=False)
    for column in ("column", "kind", "type", "levels or range", "missing", "reason"):
        table.add_column(column, overflow="fold")
    for decision in inference.decisions:
        missing = f"{decision.missing_rate:.1%}" if decision.missing_rate else ""
        table.add_row(
            decision.column,
            decision.kind,
            decision.type,
            decision.summary,
            missing,
            decision.reason,
            style="yellow" if decision.warning else None,
        )
    lines = [Text(note) for note in (f"{inference.rows} rows", *inference.notes)]
    return Group(*lines, table)


def _number(value: float | None, pattern: str = "{:.3f}", missing: str = "-") -> str:
    return missing if value is None else pattern.format(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _predictor_line(state: dict[str, Any]) -> tuple[str, str]:
    model = _number(state["model_version"], "v{}", "none")
    if state["model_version"] and state["compiled"]:
        model += " (compiled)"
    latency = _number(state["latency_p99_s"] and state["latency_p99_s"] * 1000, "{:.1f} ms")
    return model, (
        f"{_number(state['rate_per_s'], '{:.1f}/s')}  p99 {latency}  lag "
        f"{_number(state['lag'], '{}')}  predictions {_number(state['predictions'], '{}')}  "
        f"dead letters {_number(state['dead_letters'], '{}')}  swaps "
        f"{_number(state['swaps'], '{}')}  model age {_duration(state['model_age_s'])}"
    )


def _recorder_line(state: dict[str, Any]) -> tuple[str, str]:
    return "", (
        f"{_number(state['rate_per_s'], '{:.1f}/s')}  lag {_number(state['lag'], '{}')}  "
        f"labelled {_number(state['labelled'], '{}')}  pending labels "
        f"{_number(state['pending_labels'], '{}')}  retrain commands "
        f"{_number(state['retrain_commands'], '{}')}"
    )


def _trainer_line(state: dict[str, Any]) -> tuple[str, str]:
    rounds = state["rounds"]
    decision = state["last_decision"] or "no round yet"
    return _number(state["champion_version"], "champion v{}", "no champion"), (
        f"last round: {decision} ({_duration(state['last_round_age_s'])} ago), holdout "
        f"loss {_number(state['last_holdout_loss'], '{:.4f}')}  rounds "
        f"{rounds['promoted']} promoted / {rounds['refused']} refused / {rounds['failed']} "
        f"failed  refused in a row {state['refused_in_a_row']}"
    )


def _monitor_line(state: dict[str, Any]) -> tuple[str, str]:
    drift = _number(state["drift_score"], "{:.2f}")
    if state["drifted"]:
        drift = f"[red]{drift} DRIFTED[/red]"
    top = state["drifting_features"].items()
    features = ", ".join(f"{name} {score:.2f}" for name, score in top)
    return _number(state["champion_version"], "v{}", ""), (
        f"drift {drift}{f' ({features})' if features else ''}  accuracy realised "
        f"{_number(state['realised_accuracy'])} / estimated "
        f"{_number(state['estimated_accuracy'])}  AUC realised {_number(state['realised_auc'])}"
        f" / estimated {_number(state['estimated_auc'])}  labelled "
        f"{_number(state['labelled_ratio'], '{:.0%}')}  checks {state['checks']}"
    )


_STATUS_LINES = {
    "predictor": _predictor_line,
    "recorder": _recorder_line,
    "trainer": _trainer_line,
    "monitor": _monitor_line,
}


__all__ = [
    "ConsoleProgress",
    "JsonFormatter",
    "LOG_FORMATS",
    "Terminal",
    "configure_logging",
    "render_inference",
    "render_status",
]

"""The sample app's progress against a running predictor: sent and answered as bars on a
terminal, a line every 2 s elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from streamfit.app import run_app
from streamfit.ops.console import ConsoleProgress
from streamfit.ops.progress import LineProgress


def test_the_app_counts_sent_and_answered_as_bars_or_lines(running, settings) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140)
    with ConsoleProgress(console) as bars:
        summary = run_app(settings, running.bus, count=40, rate=400, progress=bars)
        sent, answered = bars.bars.tasks
    assert summary.answered == 40
    assert (sent.description, sent.completed, sent.total) == ("sent", 40, 40)
    assert (answered.description, answered.completed, answered.total) == ("answered", 40, 40)
    assert "40/40" in screen.getvalue() and "━" in screen.getvalue()

    lines: list[str] = []  # off a terminal: a line every 2 s, not one per count
    summary = run_app(settings, running.bus, count=50, rate=12, progress=LineProgress(lines.append))
    assert summary.answered == 50
    assert 1 <= len(lines) < 10, lines  # about 4 s of sending: not one line per request
    assert all(line.startswith("sent ") and "answered" in line for line in lines)

"""How long work reports how far it is: the cores call a :class:`Progress`, the command line
decides what the user sees (bars on a terminal, plain lines in a log).

Two kinds of report: :meth:`Progress.note`, a line worth keeping ("refit: 344 boosting rounds");
:meth:`Progress.update`, a count towards a total ("trials" 3 of 10), with a ``status`` line when
the step is worth a line of its own in a log. A bar shows every update; a log shows only the
updates that carry a status, so a core may count often and write lines at the pace a log wants.

>>> lines = []
>>> progress = LineProgress(lines.append)
>>> progress.update("sent", 10, 200)  # a count: a bar's business, not a log line
>>> progress.update("trials", 1, 2, "trial 1/2: cv logloss 0.2770 (best 0.2770)")
>>> progress.note("refit: 344 boosting rounds")
>>> lines
['trial 1/2: cv logloss 0.2770 (best 0.2770)', 'refit: 344 boosting rounds']
"""

from __future__ import annotations

from collections.abc import Callable


class Progress:
    """Reports that go nowhere: the default when nobody watches."""

    def note(self, text: str) -> None:
        """A line worth keeping."""

    def update(self, task: str, done: int, total: int | None = None, status: str = "") -> None:
        """``done`` of ``total`` steps of ``task``; ``status``: the step's line, if it deserves
        one in a log."""


class LineProgress(Progress):
    """Plain lines through ``say`` (``print``, ``log.info``): notes and updates with a status."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def note(self, text: str) -> None:
        self.say(text)

    def update(self, task: str, done: int, total: int | None = None, status: str = "") -> None:
        if status:
            self.say(status)


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    """A :class:`Progress` from what a caller passed: one, a function taking lines, or None."""
    if progress is None:
        return Progress()
    if isinstance(progress, Progress):
        return progress
    return LineProgress(progress)


__all__ = ["LineProgress", "Progress", "as_progress"]

"""``streamfit experiments``: what became of each challenger.

Two kinds of record, each read from where it is kept:

* the **live comparisons** (``--promotion shadow`` or ``canary``, ``streamfit shadow``), running
  and decided, from the comparison store (:func:`streamfit.challengers.live.live_comparisons`);
* the challengers the trainer's **gate refused** (a worse holdout loss, or a contract that
  breaks today's producers), from the trial store's ``rounds`` table: the round, the version,
  the champion it was compared with and the reason, as the trainer logged it (``gate: vN
  <reason>``).

The command lives in ``training`` because the trial store is the trainer's, and ``challengers``
never imports ``training`` (the trainer imports the live judge).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..challengers.live import comparisons_table, live_comparisons
from ..ops.table import aligned
from .gate import REFUSED
from .trials import TrialStore

if TYPE_CHECKING:
    from ..config import Settings


def gate_refusals(settings: Settings) -> list[dict[str, Any]]:
    """Every challenger the gate refused, oldest first: its round (and what triggered it), its
    version, the champion it was compared with, the gate's reason and when it decided."""
    store = TrialStore(settings.trials_url)
    try:
        rounds = store.refused()
    finally:
        store.close()
    return [
        {
            "stage": "gate",
            "round": r["round_id"],
            "trigger": r["trigger"],
            "challenger": r["model_version"],
            "champion": r["compared_with"],
            "decision": "refused",
            "reason": r["gate_reason"],
            "decided_at": r["finished"],
        }
        for r in rounds
    ]


def experiments_command(settings: Settings, output: str = "table") -> str:
    """Text for ``streamfit experiments``. JSON: one list, oldest first, of the live comparisons
    (``"stage": "live"``) and the gate's refusals (``"stage": "gate"``, ``"decision":
    "refused"``), each with its ``challenger``, ``champion``, ``decision`` and ``reason``. Table:
    the live comparisons, then the refusals."""
    live = [{"stage": "live", **c} for c in live_comparisons(settings)]
    refused = gate_refusals(settings)
    model = settings.registered_model
    if output == "json":
        when = {"live": "started_at", "gate": "decided_at"}
        found = sorted(live + refused, key=lambda e: e[when[e["stage"]]] or 0.0)
        return json.dumps(found, indent=2)
    if not live and not refused:
        return f"no challenger of {model!r} compared on live traffic or refused by the gate yet"
    text = comparisons_table(live) if live else f"no live comparison of {model!r} yet"
    if refused:
        rows = [("round", "challenger", "champion", "reason")]
        rows += [
            (
                str(r["round"]),
                _version(r["challenger"]),
                _version(r["champion"]),
                r["reason"].removeprefix(REFUSED),
            )
            for r in refused
        ]
        text += "\n\nrefused by the gate:\n" + aligned(rows)
    return text


def _version(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


__all__ = ["experiments_command", "gate_refusals"]

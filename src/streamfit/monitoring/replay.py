"""``streamfit replay``: re-score a bounded slice of recorded traffic with any registered
version and compare its realised metrics with the champion's on the same rows.

Read-only: it reads labelled observations from the store and fetches both bundles through the
registry (digest verified, as a predictor does, into this data directory's model cache); it
consumes nothing, produces nothing and moves no alias, so live services never see it. Both
models re-score the same rows, so the comparison is like for like (the recorded answers may
come from several champions, or from a canary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ..models.registry import ModelRegistry
from ..ops.table import aligned
from ..stores import ObservationStore
from .performance import realised_metrics, realised_performance

if TYPE_CHECKING:
    from ..config import Settings

REPLAY_METRICS = ("log_loss", "auc", "accuracy")


class ReplayError(ValueError):
    """The replay cannot run (no such version, no rows in the slice, a bad time)."""


@dataclass(frozen=True)
class Replay:
    rows: int
    since: float | None
    until: float | None
    version: int
    champion: int
    metrics: dict[int, dict[str, float]]  # version -> realised metrics on the slice

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "since": self.since,
            "until": self.until,
            "version": self.version,
            "champion": self.champion,
            "metrics": {
                f"v{v}": {k: _plain(m[k]) for k in ("n", *REPLAY_METRICS)}
                for v, m in self.metrics.items()
            },
        }


def parse_time(text: str | None) -> float | None:
    """Epoch seconds from ``text``: epoch seconds, or an ISO-8601 date/time (UTC if no zone)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReplayError(f"not a time: {text!r} (epoch seconds or ISO-8601)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def replay(
    settings: Settings,
    version: int,
    *,
    since: float | None = None,
    until: float | None = None,
    last: int | None = None,
    registry: ModelRegistry | None = None,
) -> Replay:
    """Re-score the slice with ``version`` and the champion; their realised metrics on it."""
    if last is not None and last < 1:
        raise ReplayError(f"--last must be >= 1, got {last}")
    registry = registry or ModelRegistry.from_settings(settings)
    champion = registry.champion()
    if champion is None:
        raise ReplayError("no champion to compare with (run `streamfit init`)")
    store = ObservationStore(settings.store_url)
    try:
        frame = store.recorded_slice(since, until, last)
    finally:
        store.close()
    if frame.empty:
        raise ReplayError("no labelled observation in that slice of recorded traffic")
    labels = frame["label"].to_numpy(dtype=float)
    metrics: dict[int, dict[str, float]] = {}
    for wanted in dict.fromkeys((version, champion.version)):
        # BundleError (no such version, no digest, files not matching it) goes to the caller.
        bundle, _ = registry.load(registry.get(wanted), settings.model_cache)
        rows = frame.reindex(columns=list(bundle.contract.features))  # absent: missing
        outputs = bundle.predict_matrix(bundle.pipeline.transform(rows))
        if bundle.rules.name == "binary":
            metrics[wanted] = realised_metrics(labels.astype(int), np.clip(outputs, 0.0, 1.0))
        else:
            metrics[wanted] = realised_performance(bundle.rules.name, labels, outputs)
    return Replay(len(frame), since, until, version, champion.version, metrics)


def replay_command(
    settings: Settings,
    version: int,
    *,
    since: str | None = None,
    until: str | None = None,
    last: int | None = None,
    output: str = "table",
) -> str:
    """``streamfit replay``: the replay as a table or as JSON."""
    result = replay(settings, version, since=parse_time(since), until=parse_time(until), last=last)
    if output == "json":
        return json.dumps(result.as_dict(), indent=2)
    header = ("model", "rows", *REPLAY_METRICS)
    rows = [header]
    for v, m in result.metrics.items():
        role = " (champion)" if v == result.champion else ""
        rows.append((f"v{v}{role}", str(m["n"]), *(f"{m[k]:.4f}" for k in REPLAY_METRICS)))
    return aligned(rows) + (
        f"\n(re-scored {result.rows} labelled requests recorded in the slice; log loss: lower "
        "is better)"
    )


def _plain(value: float) -> float | None:
    return None if value != value else float(value)  # NaN (one class only) -> null in JSON


__all__ = ["Replay", "ReplayError", "parse_time", "replay", "replay_command"]

"""Champion/challenger gate and the holdout it scores on (promotions:
``streamfit.models.promotion``).

The holdout has two parts, and neither is ever trained on:

* **A fixed slice of the training table**: a ``holdout_fraction`` of the rows (of each class
  for classification), drawn with a
  constant seed (:data:`HOLDOUT_SEED`, independent of ``Settings.seed``), so it is the same rows
  in every round and no model, old or new, has seen them.
* **The most recent labelled observations**: the newest ``gate_recent_fraction`` of the labelled
  observations handed to a round are held out of that round's training. They arrived after the
  champion was trained (the champion's round only had the observations before them), so both
  models meet them fresh. The next round trains on them and holds out the newer ones.

The challenger is promoted only if its contract is backward compatible with the champion's
(:func:`streamfit.contract.check_backward`: today's producers keep working) and its holdout loss
(log loss, or RMSE for regression) is at most the champion's plus ``gate_tolerance``; the first
model (no champion, or a champion that no longer loads) is always promoted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..contract import check_backward
from ..datasets import HOLDOUT_SEED, split_fixed_holdout
from ..models.bundle import BundleError, ModelBundle, ModelStore


def split_recent(
    observations: pd.DataFrame | None, fraction: float, features: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) of labelled observations, oldest first: the newest ``fraction`` (at
    least one row when there are any and fraction > 0) is the holdout. Only the ``features``
    and the encoded ``label`` are kept; a feature no request carried is all missing."""
    columns = [*features, "label"]
    if observations is None or observations.empty:
        empty = pd.DataFrame(columns=columns)
        return empty, empty.copy()
    labelled = observations.loc[observations["label"].notna()]
    frame = labelled.reindex(columns=columns).reset_index(drop=True)
    frame["label"] = frame["label"].astype("float64")
    held = math.ceil(fraction * len(frame)) if fraction > 0 else 0
    cut = len(frame) - held
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


REFUSED = "refused: "  # how the reason of every refusal starts (the trial store finds them so)


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reason: str
    challenger: dict[str, float]  # holdout metrics
    champion: dict[str, float] | None
    champion_version: int | None  # the champion the challenger was compared with
    holdout_rows: int


def score(bundle: ModelBundle, holdout: pd.DataFrame) -> dict[str, float]:
    """The task's metrics of ``bundle`` on ``holdout`` (its ``loss`` among them)."""
    outputs = bundle.predict_matrix(bundle.pipeline.transform(holdout))
    return bundle.rules.metrics(holdout["label"].to_numpy(), outputs)


def decide(
    challenger: ModelBundle,
    store: ModelStore,
    holdout: pd.DataFrame,
    tolerance: float,
) -> GateDecision:
    """Score the challenger and the store's champion on ``holdout`` and decide."""
    mine = score(challenger, holdout)
    champion_version = store.champion()
    if champion_version is None:
        return GateDecision(True, "first model", mine, None, None, len(holdout))
    try:
        champion = store.load(champion_version)
        champion.validate()
    except BundleError as exc:
        return GateDecision(
            True, f"champion v{champion_version} unusable ({exc})", mine, None, None, len(holdout)
        )
    breaking = check_backward(champion.contract, challenger.contract)
    if breaking:
        reason = f"{REFUSED}its contract breaks v{champion_version}'s producers: " + "; ".join(
            breaking
        )
        return GateDecision(False, reason, mine, None, champion_version, len(holdout))
    theirs = score(champion, holdout)
    loss = challenger.rules.loss
    words = loss.replace("_", " ") if loss != "rmse" else "RMSE"
    limit = theirs[loss] + tolerance
    verdict = (
        f"holdout {words} {mine[loss]:.4f} vs champion v{champion_version} "
        f"{theirs[loss]:.4f} (tolerance {tolerance:g}, {len(holdout)} rows)"
    )
    promoted = mine[loss] <= limit
    reason = ("promoted: " if promoted else REFUSED) + verdict
    return GateDecision(promoted, reason, mine, theirs, champion_version, len(holdout))


__all__ = [
    "HOLDOUT_SEED",
    "REFUSED",
    "GateDecision",
    "decide",
    "score",
    "split_fixed_holdout",
    "split_recent",
]

"""Challengers on live traffic: start a live comparison, judge it as labels arrive, act on it.

``--promotion shadow``: a challenger that passes the offline gate does not become the champion.
:func:`start_comparison` has every predictor score it beside the champion (``@shadow``, a
``shadow`` event on ``models``) and records a running comparison
(:class:`~streamfit.stores.ComparisonStore`). The recorder stores both models' probabilities
with each observation; as labels arrive, :class:`LiveJudge` (run by the trainers) re-reads the
labelled pairs from the observation store and runs the sequential test of
:mod:`streamfit.challengers.comparison` on them, in the order they were completed. Its outcome:

* ``promote``: the challenger is better; its shadowing ends and :func:`promotion.promote` (the
  one way to a new champion) makes it the champion;
* ``reject``: it is worse; its shadowing ends, the champion stays;
* ``keep``: ``live_max_pairs`` pairs came without evidence either way; the champion stays;
* ``superseded``: the champion changed under the comparison (``promote``/``rollback`` by hand).

``--promotion canary``: the same, but the predictors let the challenger answer its share of
requests (``canary_percent``; pairs still exist for every request, both orientations are read).
A worse challenger is then ``rollback`` rather than ``reject`` (the canary ends: all traffic
back to the champion), and so is one whose label-free estimated accuracy
(:func:`streamfit.challengers.estimates.expected_accuracy`) on the requests it answered falls below
``canary_accuracy_floor`` before its labels decide (checked once it answered
``live_min_pairs``).

The decision, its evidence (pairs, estimate, interval) and how long it took go to the
comparison's row, to the challenger's MLflow run (metrics ``live_*``, tag ``live_decision``) and
onto ``models`` (the ``shadow_ended`` event, and the ``promoted`` one, carry them as ``live``).
Recomputing from the store makes the judge stateless: any trainer can judge, a restarted one
picks up where the pairs are, and of several deciding at once only one acts (the store's
``finish`` changes a running comparison only).

One comparison runs at a time: a challenger that passes the gate meanwhile is registered but
not shadowed (the round says so).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..models.bundle import BundleError
from ..models.promotion import end_shadow, promote, start_shadow
from ..models.registry import ModelRegistry
from ..ops.table import aligned
from ..stores import Comparison, ComparisonStore, ObservationStore
from .comparison import Evidence, LiveComparison
from .estimates import expected_accuracy

if TYPE_CHECKING:
    from ..bus import Bus, Producer
    from ..config import Settings

log = logging.getLogger("streamfit.challengers.live")


class ComparisonError(ValueError):
    """A live comparison cannot start (another is running, no champion...)."""


def start_comparison(
    settings: Settings,
    challenger: int,
    *,
    reason: str = "",
    bus: Bus | None = None,
    producer: Producer | None = None,
    registry: ModelRegistry | None = None,
    comparisons: ComparisonStore | None = None,
) -> Comparison:
    """Shadow registry version ``challenger`` against the champion and record the comparison.

    Raises :class:`ComparisonError` when another comparison is running or there is no champion,
    and BundleError when the version cannot be shadowed."""
    registry = registry or ModelRegistry.from_settings(settings)
    champion = registry.champion()
    if champion is None:
        raise ComparisonError("no champion to compare a challenger with (run `streamfit init`)")
    store = comparisons or ComparisonStore(settings.store_url)
    try:
        running = store.running(settings.registered_model)
        if running is not None:
            raise ComparisonError(
                f"v{running.challenger} is being compared with v{running.champion} already "
                "(one live comparison at a time)"
            )
        start_shadow(
            settings, challenger, reason=reason, bus=bus, producer=producer, registry=registry
        )
        return store.start(
            settings.registered_model,
            champion=champion.version,
            challenger=challenger,
            policy="canary" if settings.promotion == "canary" else "shadow",
        )
    finally:
        if comparisons is None:
            store.close()


def shadow_after_gate(
    settings: Settings,
    challenger: int,
    gate_reason: str,
    *,
    producer: Producer | None = None,
    registry: ModelRegistry | None = None,
) -> str:
    """What the trainer's gate does in shadow mode with a challenger that passed it: start its
    live comparison. Returns the round's reason (shadowed, or why not)."""
    try:
        comparison = start_comparison(
            settings, challenger, reason=gate_reason, producer=producer, registry=registry
        )
    except (ComparisonError, BundleError) as exc:
        return f"not shadowed: {exc}; gate {gate_reason}"
    canary = (
        f" (canary: it answers {settings.canary_percent}% of requests)"
        if comparison.policy == "canary"
        else ""
    )
    return f"shadowed against v{comparison.champion} on live traffic{canary}; gate {gate_reason}"


class LiveJudge:
    """Judges the running comparison on the labelled pairs so far (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        observations: ObservationStore | None = None,
        comparisons: ComparisonStore | None = None,
        registry: ModelRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.observations = observations or ObservationStore(settings.store_url)
        self.comparisons = comparisons or ComparisonStore(settings.store_url)
        self.registry = registry or ModelRegistry.from_settings(settings)
        self._judged: tuple[int, int] | None = None  # (comparison, pairs) last judged
        self.decisions = 0  # decisions this judge took and acted on

    def check(
        self, *, producer: Producer | None = None, bus: Bus | None = None
    ) -> Comparison | None:
        """Judge the running comparison; the comparison if this call decided it, else None."""
        settings = self.settings
        running = self.comparisons.running(settings.registered_model)
        if running is None:
            return None
        champion = self.registry.champion()
        if champion is None or champion.version != running.champion:
            now = champion.version if champion else None
            return self._decide(
                running,
                "superseded",
                self._evidence(running),
                f"the champion changed under the comparison (v{running.champion} -> v{now})",
                producer,
                bus,
            )
        if running.policy == "canary":
            floored = self._below_floor(running)
            if floored is not None:
                return self._decide(
                    running, "rollback", self._evidence(running), floored, producer, bus
                )
        pairs = self.observations.shadow_pairs(
            running.champion, running.challenger, limit=settings.live_max_pairs
        )
        if self._judged == (running.id, len(pairs)):
            return None  # nothing new since the last look
        self._judged = (running.id, len(pairs))
        test = LiveComparison(
            alpha=settings.live_alpha,
            epsilon=settings.live_epsilon,
            min_pairs=settings.live_min_pairs,
            max_pairs=settings.live_max_pairs,
        )
        evidence = test.update(
            pairs["probability"].to_numpy(),
            pairs["shadow_probability"].to_numpy(),
            pairs["label"].to_numpy(),
        )
        if evidence.decision == "running":
            self.comparisons.progress(
                running.id,
                pairs=evidence.pairs,
                estimate=evidence.estimate,
                lower=evidence.lower,
                upper=evidence.upper,
            )
            return None
        decision = evidence.decision
        if decision == "reject" and running.policy == "canary":
            decision = "rollback"  # the canary's traffic goes back to the champion
        return self._decide(running, decision, evidence, _explain(evidence), producer, bus)

    def _below_floor(self, running: Comparison) -> str | None:
        """Canary mode, before labels: why the challenger's label-free estimated accuracy on the
        requests it answered is below the floor, or None (fine, or too few answers yet)."""
        answers = self.observations.canary_answers(running.champion, running.challenger)
        if answers.size < self.settings.live_min_pairs:
            return None
        estimate = expected_accuracy(answers)
        floor = self.settings.canary_accuracy_floor
        if estimate >= floor:
            return None
        return (
            f"estimated accuracy {estimate:.3f} on its {answers.size} canary answers is below "
            f"the floor {floor:.3f} (label-free estimate)"
        )

    def _evidence(self, running: Comparison) -> Evidence:
        return Evidence(
            "superseded",
            running.pairs,
            running.estimate or 0.0,
            running.lower if running.lower is not None else float("-inf"),
            running.upper if running.upper is not None else float("inf"),
            self.settings.live_alpha,
        )

    def _decide(
        self,
        running: Comparison,
        decision: str,
        evidence: Evidence,
        reason: str,
        producer: Producer | None,
        bus: Bus | None,
    ) -> Comparison | None:
        if not self.comparisons.finish(
            running.id,
            decision,
            pairs=evidence.pairs,
            estimate=evidence.estimate,
            lower=evidence.lower,
            upper=evidence.upper,
            reason=reason,
        ):
            return None  # another trainer decided it first, and acts on it
        decided = self.comparisons.get(running.id)
        assert decided is not None
        self.decisions += 1
        live = {
            "decision": decision,
            "champion": running.champion,
            "challenger": running.challenger,
            "pairs": evidence.pairs,
            "estimate": evidence.estimate,
            "lower": evidence.lower,
            "upper": evidence.upper,
            "alpha": evidence.alpha,
            "duration_s": decided.duration_s,
        }
        log.info(
            "live comparison v%s vs champion v%s: %s after %d labelled pairs (%s)",
            running.challenger,
            running.champion,
            decision,
            evidence.pairs,
            reason,
        )
        common = {"bus": bus, "producer": producer, "registry": self.registry}
        end_shadow(
            self.settings, running.challenger, reason=f"{decision}: {reason}", live=live, **common
        )
        if decision == "promote":
            promote(
                self.settings,
                running.challenger,
                reason=f"live comparison: {reason}",
                trigger="live",
                live=live,
                **common,
            )
        self._log_to_run(running.challenger, live, reason)
        return decided

    def _log_to_run(self, version: int, live: dict[str, Any], reason: str) -> None:
        """The decision on the challenger's MLflow run (its training round's run)."""
        try:
            run_id = self.registry.get(version).run_id
            if not run_id:
                return
            client = self.registry.client
            stamp = int(time.time() * 1000)
            for key in ("pairs", "estimate", "lower", "upper", "duration_s"):
                value = live[key]
                if value is not None and abs(value) != float("inf"):
                    client.log_metric(run_id, f"live_{key}", float(value), timestamp=stamp)
            client.set_tag(run_id, "live_decision", live["decision"])
            client.set_tag(run_id, "live_reason", reason[:500])
            client.set_tag(run_id, "live_champion", str(live["champion"]))
        except Exception as exc:  # the decision stands; its record in MLflow is best effort
            log.warning("live decision of v%s not logged to MLflow: %s", version, exc)

    def close(self) -> None:
        self.observations.close()
        self.comparisons.close()


def live_comparisons(settings: Settings) -> list[dict[str, Any]]:
    """Every live comparison of the registered model, oldest first, each with its label-free
    estimated accuracies (see :func:`_label_free`): what ``streamfit experiments`` lists."""
    store = ComparisonStore(settings.store_url)
    observations = ObservationStore(settings.store_url)
    try:
        return [
            c.as_dict() | _label_free(c, observations, settings.live_max_pairs)
            for c in store.list(settings.registered_model)
        ]
    finally:
        store.close()
        observations.close()


def comparisons_table(found: list[dict[str, Any]]) -> str:
    """:func:`live_comparisons` as an aligned table with a note on its columns."""
    header = (
        "id", "challenger", "champion", "decision", "pairs", "estimate", "interval", "took",
        "est. accuracy",
    )  # fmt: skip
    rows = [header]
    for c in found:
        interval = (
            f"[{c['lower']:+.4f}, {c['upper']:+.4f}]"
            if c["lower"] is not None and c["upper"] is not None
            else "-"
        )
        accuracy = (
            f"{c['champion_estimated_accuracy']:.3f} vs {c['challenger_estimated_accuracy']:.3f} "
            f"on {c['scored']}"
            if c["scored"]
            else "-"
        )
        rows.append(
            (
                str(c["id"]),
                f"v{c['challenger']}",
                f"v{c['champion']}",
                c["decision"],
                str(c["pairs"]),
                "-" if c["estimate"] is None else f"{c['estimate']:+.4f}",
                interval,
                "-" if c["duration_s"] is None else f"{c['duration_s']:.0f} s",
                accuracy,
            )
        )
    return aligned(rows) + (
        "\n(estimate, interval: log loss per request, champion minus challenger; > 0: the "
        "challenger is better. est. accuracy: label-free, champion vs challenger on the latest "
        "requests both scored, running comparisons only; shown, never decides)"
    )


def _label_free(comparison: Comparison, store: ObservationStore, limit: int) -> dict[str, Any]:
    """A running comparison's label-free estimated accuracy of both models on the latest
    ``limit`` requests both scored (None for a decided one: its labels had the last word)."""
    empty: dict[str, Any] = {
        "scored": 0,
        "champion_estimated_accuracy": None,
        "challenger_estimated_accuracy": None,
    }
    if comparison.decision != "running":
        return empty
    scores = store.shadow_scores(comparison.champion, comparison.challenger, limit)
    if scores.empty:
        return empty
    return {
        "scored": len(scores),
        "champion_estimated_accuracy": expected_accuracy(scores["probability"].to_numpy()),
        "challenger_estimated_accuracy": expected_accuracy(scores["shadow_probability"].to_numpy()),
    }


def _explain(evidence: Evidence) -> str:
    interval = (
        f"log-loss gain {evidence.estimate:+.4f} per request, {1 - evidence.alpha:.0%} "
        f"confidence sequence [{evidence.lower:+.4f}, {evidence.upper:+.4f}], "
        f"{evidence.pairs} labelled pairs"
    )
    if evidence.decision == "promote":
        return f"challenger better: {interval}"
    if evidence.decision == "reject":
        return f"challenger worse: {interval}"
    return f"no evidence either way at the maximum: {interval}"


__all__ = [
    "ComparisonError",
    "LiveJudge",
    "comparisons_table",
    "live_comparisons",
    "shadow_after_gate",
    "start_comparison",
]

"""The trainer service: retrain commands in, new champion announcements out.

Commands that pile up while a round runs are coalesced into one round: the newest labelled data
already includes what the older commands asked for.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from .. import messages
from ..bus import Bus
from ..config import Settings
from ..observations import ObservationStore

log = logging.getLogger("streamfit.trainer")


class TrainerService:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.observations = ObservationStore(settings.observations_path)
        self.running = False
        self.ready = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.rounds = 0
        self.promotions = 0
        self.failures = 0
        self.commands_seen = 0

    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        from .round import run_round  # heavy imports (MLflow, optimisers) only when training

        self.running = True
        topics = self.settings.topics
        with contextlib.ExitStack() as stack:
            consumer = stack.enter_context(
                self.bus.consumer([topics.retrain], group="streamfit-trainer")
            )
            producer = self.bus.producer()
            stack.callback(producer.close)
            log.info("trainer waiting for retrain commands on %r", topics.retrain)
            self.ready.set()
            while self.running:
                commands = consumer.poll(1000, timeout=0.5)
                if not commands:
                    continue
                self.idle.clear()
                self.commands_seen += len(commands)
                try:
                    new_rows = self.observations.labelled_frame()
                    log.info(
                        "retraining on %d new labelled observations (%d command(s))",
                        len(new_rows),
                        len(commands),
                    )
                    outcome = run_round(
                        self.settings,
                        trigger="retrain",
                        max_evals=self.settings.max_evals,
                        new_observations=new_rows,
                        progress=log.info,
                    )
                except Exception:
                    # A failed round must not take the trainer down; the champion keeps serving.
                    self.failures += 1
                    log.exception("retraining failed; the current champion keeps serving")
                else:
                    self.rounds += 1
                    log.info(
                        "round done: v%s %s (%s)",
                        outcome.version,
                        "promoted" if outcome.promoted else "refused",
                        outcome.reason,
                    )
                    if outcome.promoted:
                        self.promotions += 1
                        producer.produce(
                            topics.models,
                            messages.model_ready(
                                outcome.version, "promoted", metrics=outcome.metrics
                            ),
                        )
                        producer.flush()
                consumer.commit()
                self.idle.set()

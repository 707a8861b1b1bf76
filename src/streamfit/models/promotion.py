"""The one way a model becomes the champion: :func:`promote`.

``init`` (with or without ``--force``), the trainer's gate, ``promote``, ``rollback`` and the demo
all call it. It

1. checks the version is registered with a bundle digest (a version without one is refused: no
   predictor would trust it),
2. points the registry alias ``@champion`` at it and records the promotion in the registry's
   history tags (what ``rollback`` walks back),
3. moves the local champion pointer of this data directory's bundle store, when the store holds
   that version (the trainer's gate and warm start, and the monitor, still read it there),
4. announces it on ``models``: ``{"version", "event", "model_uri", "sha256", ...}``.

It builds no compiled library: predictors share no disk with the trainer, so each compiles the
bundle it fetched and verified, in its own cache, off its hot path.

Shadowing a challenger (:func:`start_shadow`, :func:`end_shadow`) moves no champion: it points
the alias ``@shadow`` at the challenger (predictors started later find it there) and announces
``shadow`` / ``shadow_ended`` on ``models``. A live comparison that promotes its challenger ends
its shadowing and then calls :func:`promote`, the one way to a new champion.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .. import messages
from .bundle import BundleError, ModelStore
from .registry import SHADOW, ModelRegistry, RegisteredBundle

if TYPE_CHECKING:
    from ..bus import Bus, Producer
    from ..config import Settings

log = logging.getLogger("streamfit.models.promotion")

EVENTS = ("initial", "promoted", "rolled_back")


def promote(
    settings: Settings,
    version: int,
    *,
    event: str = "promoted",
    reason: str = "",
    bus: Bus | None = None,
    producer: Producer | None = None,
    registry: ModelRegistry | None = None,
    **details: Any,
) -> RegisteredBundle:
    """Make registry ``version`` the champion and announce it (see the module docstring).

    The announcement goes through ``producer`` (flushed), else a producer of ``bus``, else of
    ``settings.bus``; an in-process bus built here has nobody to tell, and predictors started
    later find ``@champion`` themselves. ``details`` (metrics, by...) ride along in the event.
    """
    if event not in EVENTS:
        raise ValueError(f"event must be one of {EVENTS}, got {event!r}")
    registry = registry or ModelRegistry.from_settings(settings)
    entry = registry.get(version)
    if not entry.sha256:
        raise BundleError(f"v{version} was registered without a bundle digest: not promoted")
    registry.make_champion(version, rollback=event == "rolled_back")
    store = ModelStore(settings.models_dir, settings.keep_models)
    if store.path(version).is_dir():
        store.set_champion(version, rollback=event == "rolled_back")
    payload = messages.model_ready(
        version, event, model_uri=entry.model_uri, sha256=entry.sha256, reason=reason, **details
    )
    _announce(settings, payload, bus, producer)
    detail = reason.removeprefix(f"{event}: ")  # the gate's reason starts with its verdict
    log.info("champion is now v%s (%s%s)", version, event, f": {detail}" if detail else "")
    return entry


def breaking_changes(
    settings: Settings, version: int, registry: ModelRegistry | None = None
) -> list[str]:
    """Why registry ``version``'s contract would break the producers of the champion's
    (:func:`streamfit.contract.check_backward`); empty when it would not, or with no champion."""
    from ..contract import check_backward

    registry = registry or ModelRegistry.from_settings(settings)
    champion = registry.champion()
    if champion is None or champion.version == version:
        return []
    serving, _ = registry.load(champion, settings.model_cache)
    candidate, _ = registry.load(registry.get(version), settings.model_cache)
    return check_backward(serving.contract, candidate.contract)


def rollback(
    settings: Settings,
    *,
    bus: Bus | None = None,
    registry: ModelRegistry | None = None,
    **details: Any,
) -> RegisteredBundle:
    """Go back to the champion before the current one (registry history); promote it with the
    event ``rolled_back``. Rolling back twice walks back two promotions. Raises BundleError when
    there is nothing to go back to."""
    registry = registry or ModelRegistry.from_settings(settings)
    current = registry.champion()
    current_version = current.version if current else None
    earlier = [
        version
        for _, version, rolled_back in registry.champion_history()
        if version != current_version and not rolled_back
    ]
    if not earlier:
        raise BundleError(f"no earlier champion to roll back to (current v{current_version})")
    return promote(
        settings,
        earlier[-1],
        event="rolled_back",
        reason=f"rollback from v{current_version}",
        bus=bus,
        registry=registry,
        **details,
    )


def start_shadow(
    settings: Settings,
    version: int,
    *,
    reason: str = "",
    bus: Bus | None = None,
    producer: Producer | None = None,
    registry: ModelRegistry | None = None,
    **details: Any,
) -> RegisteredBundle:
    """Have every predictor score registry ``version`` beside the champion (shadow mode)."""
    registry = registry or ModelRegistry.from_settings(settings)
    entry = registry.get(version)
    if not entry.sha256:
        raise BundleError(f"v{version} was registered without a bundle digest: not shadowed")
    champion = registry.champion()
    if champion is not None and champion.version == version:
        raise BundleError(f"v{version} is the champion: there is nothing to shadow it against")
    registry.set_alias(SHADOW, version)
    payload = messages.model_ready(
        version, "shadow", model_uri=entry.model_uri, sha256=entry.sha256, reason=reason, **details
    )
    _announce(settings, payload, bus, producer)
    log.info("shadowing v%s beside the champion%s", version, f" ({reason})" if reason else "")
    return entry


def end_shadow(
    settings: Settings,
    version: int,
    *,
    reason: str = "",
    bus: Bus | None = None,
    producer: Producer | None = None,
    registry: ModelRegistry | None = None,
    **details: Any,
) -> None:
    """Stop shadowing ``version`` (the alias goes if it still names it) and announce it."""
    registry = registry or ModelRegistry.from_settings(settings)
    shadowed = registry.shadow()
    if shadowed is not None and shadowed.version == version:
        registry.delete_alias(SHADOW)
    payload = messages.model_ready(version, "shadow_ended", reason=reason, **details)
    _announce(settings, payload, bus, producer)
    log.info("shadowing of v%s ended%s", version, f" ({reason})" if reason else "")


def _announce(
    settings: Settings, payload: bytes, bus: Bus | None, producer: Producer | None
) -> None:
    topic = settings.topics.models
    if producer is not None:
        producer.produce(topic, payload)
        producer.flush()
        return
    if bus is not None:
        with bus.producer() as own:  # closing flushes: the event is acknowledged
            own.produce(topic, payload)
        return
    if settings.bus.startswith("memory"):
        return  # a bus of our own, in this process: nobody listens
    from ..bus import bus_for

    built = bus_for(settings)
    try:
        with built.producer() as own:
            own.produce(topic, payload)
    finally:
        built.close()


__all__ = ["EVENTS", "end_shadow", "promote", "rollback", "start_shadow"]

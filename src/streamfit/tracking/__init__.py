"""Experiment tracking behind one interface; :func:`get_tracker` picks the implementation.

``get_tracker(settings)`` gives MLflow at ``settings.mlflow_uri`` (the default); ``"null"`` or
``"none"`` gives :class:`NullTracker`; any other string is taken as an MLflow tracking URI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import Tracker
from ._null import NullTracker

if TYPE_CHECKING:
    from ..config import Settings


def get_tracker(target: Settings | str | None = None, settings: Settings | None = None) -> Tracker:
    """Build a tracker from settings, or from a URI (experiment names from ``settings``)."""
    from ..config import Settings

    if isinstance(target, Settings):
        settings, target = target, None
    if target in ("null", "none"):
        return NullTracker()
    settings = settings or Settings()
    from ._mlflow import MlflowTracker  # MLflow takes seconds to import: only when used

    return MlflowTracker(
        target or settings.mlflow_uri,
        experiment=settings.experiment,
        artifact_location=settings.artifact_location,
        registered_model=settings.registered_model,
    )


__all__ = ["NullTracker", "Tracker", "get_tracker"]

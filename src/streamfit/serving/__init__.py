"""Online serving: the predictor service."""

from .predictor import Predictor, PredictorStats

__all__ = ["Predictor", "PredictorStats"]

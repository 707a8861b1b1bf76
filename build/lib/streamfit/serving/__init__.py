"""Online serving: the predictor service and its model slot."""

from ._slot import ModelSlot
from .predictor import Predictor, PredictorStats

__all__ = ["ModelSlot", "Predictor", "PredictorStats"]

"""Feature engineering shared by training and serving."""

from ._pipeline import CROSSES, FeaturePipeline
from ._schema import validate_record

__all__ = ["CROSSES", "FeaturePipeline", "validate_record"]

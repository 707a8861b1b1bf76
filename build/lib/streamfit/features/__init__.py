"""Feature engineering shared by training and serving."""

from ._pipeline import CROSSES, FeaturePipeline
from ._schema import RECORD_COLUMNS, Record, validate_record

__all__ = ["CROSSES", "RECORD_COLUMNS", "FeaturePipeline", "Record", "validate_record"]

"""Feature engineering shared by training and serving."""

from ._pipeline import CROSSES, RAW_COLUMNS, FeaturePipeline
from ._schema import RECORD_COLUMNS, Record, validate_record

__all__ = [
    "CROSSES",
    "RAW_COLUMNS",
    "RECORD_COLUMNS",
    "FeaturePipeline",
    "Record",
    "validate_record",
]

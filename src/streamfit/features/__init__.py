"""Feature engineering shared by training and serving: a contract's requests checked
(:class:`RequestSchema`) and turned into the model's matrix (:class:`FeaturePipeline`)."""

from ._pipeline import DATE_PARTS, FeaturePipeline
from ._schema import RequestSchema, request_schema

__all__ = ["DATE_PARTS", "FeaturePipeline", "RequestSchema", "request_schema"]

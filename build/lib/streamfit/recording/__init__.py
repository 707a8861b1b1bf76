"""Recording: the observation store's one writer, fed by the requests, predictions and labels
topics (``streamfit recorder``)."""

from __future__ import annotations

from ._decode import Decoded, Refused, decode_batch
from .recorder import Recorder, RecorderStats

__all__ = ["Decoded", "Recorder", "RecorderStats", "Refused", "decode_batch"]

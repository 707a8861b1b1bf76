"""The feature contract of a model: inferred from the user's table, shown, edited, and carried
with the model, so every service knows what the model reads and predicts.

Pure: no bus, no tracking server. :func:`infer` and :func:`read_source` need pandas; the
:class:`Contract` itself is plain data.
"""

from ._contract import (
    ColumnSpec,
    Contract,
    ContractError,
    Kind,
    Task,
    ValueType,
    check_backward,
)
from ._infer import Decision, Inference, infer, infer_source
from ._sources import read_source
from ._tasks import BinaryRules, MulticlassRules, RegressionRules, TaskRules, task_of

__all__ = [
    "BinaryRules",
    "MulticlassRules",
    "RegressionRules",
    "TaskRules",
    "task_of",
    "ColumnSpec",
    "Contract",
    "ContractError",
    "Decision",
    "Inference",
    "Kind",
    "Task",
    "ValueType",
    "check_backward",
    "infer",
    "infer_source",
    "read_source",
]

"""What differs between the three tasks, in one place: the label's encoding, LightGBM's
objective, the metrics and the loss the search and the gate minimise, and the prediction a
service publishes. Training, serving and monitoring all ask :func:`task_of`, so each task is
defined once and the three stay alike (one contract test suite runs over all of them).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._contract import Contract, Scalar

_EPS = 1e-15


class TaskRules(ABC):
    """One task's rules for a contract. ``loss`` is the metric the search and the gate minimise;
    ``report`` the metrics logged beside it."""

    name: str
    loss: str
    report: tuple[str, ...]
    lightgbm_metric: str
    stratified: bool

    def __init__(self, contract: Contract) -> None:
        self.contract = contract

    @abstractmethod
    def lightgbm_params(self) -> dict[str, Any]:
        """LightGBM's ``objective``, ``metric`` (and ``num_class``) for this task."""

    @abstractmethod
    def encode_label(self, value: Any) -> float | None:
        """The model's target for a raw label (a class, or a number), None when it is not
        one: the class's index (binary: 1 for the positive class), or the value."""

    @abstractmethod
    def label_of(self, target: float) -> Scalar:
        """The raw label of an encoded target (the inverse of :meth:`encode_label`)."""

    @abstractmethod
    def metrics(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        """``loss`` and the ``report`` metrics of a model's outputs against encoded targets."""

    @abstractmethod
    def predictions(self, outputs: np.ndarray | Sequence[Any]) -> list[dict[str, Any]]:
        """The fields of each published prediction for a batch's outputs, a row each (without
        the request id and the model version). Whole batches at once: it is the predictor's
        hot path."""

    def encode_labels(self, values: Sequence[Any]) -> np.ndarray:
        """:meth:`encode_label` over a column; NaN where a value is not a label."""
        encoded = [self.encode_label(value) for value in values]
        return np.array([math.nan if v is None else v for v in encoded], dtype=np.float64)

    def check_output(self, output: np.ndarray) -> str | None:
        """Why a model's outputs for a batch cannot be this task's, or None."""
        if not np.all(np.isfinite(output)):
            return "the model's outputs are not all finite"
        return None

    def describe_label(self) -> str:
        """What a label must be, for an error message."""
        return " or ".join(repr(c) for c in self.contract.classes)


class _Classes(TaskRules):
    """Binary and multiclass: a label is one of the contract's classes."""

    stratified = True

    def __init__(self, contract: Contract) -> None:
        super().__init__(contract)
        self._index = {_key(c): i for i, c in enumerate(contract.classes)}

    def _class_index(self, value: Any) -> int | None:
        if not isinstance(value, str | int | float | np.generic):  # None, lists, objects...
            return None
        if isinstance(value, float) and math.isnan(value):
            return None
        return self._index.get(_key(value))


class BinaryRules(_Classes):
    name = "binary"
    loss = "log_loss"
    report = ("auc", "accuracy")
    lightgbm_metric = "binary_logloss"

    def __init__(self, contract: Contract) -> None:
        super().__init__(contract)
        negative = [c for c in contract.classes if c != contract.positive_class]
        self.positive, self.negative = contract.positive_class, negative[0]

    def lightgbm_params(self) -> dict[str, Any]:
        return {"objective": "binary", "metric": "binary_logloss"}

    def encode_label(self, value: Any) -> float | None:
        index = self._class_index(value)
        if index is not None:
            return float(self.contract.classes[index] == self.positive)
        # 0/1 (and booleans) for the negative/positive class when the classes are not numbers
        if type(value) in (int, bool) and value in (0, 1) and not _numeric_classes(self.contract):
            return float(value)
        return None

    def label_of(self, target: float) -> Scalar:
        return self.positive if target >= 0.5 else self.negative  # type: ignore[return-value]

    def describe_label(self) -> str:
        return f"{super().describe_label()} (or 1 for {self.positive!r}, 0 for the other)"

    def metrics(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

        targets = np.asarray(targets)
        outputs = np.clip(np.asarray(outputs, dtype=np.float64), _EPS, 1 - _EPS)
        metrics = {
            "log_loss": float(log_loss(targets, outputs, labels=[0, 1])),
            "accuracy": float(accuracy_score(targets, outputs >= 0.5)),
        }
        both = len(set(targets.tolist())) > 1  # AUC needs both classes
        metrics["auc"] = float(roc_auc_score(targets, outputs)) if both else math.nan
        return metrics

    def predictions(self, outputs: np.ndarray | Sequence[Any]) -> list[dict[str, Any]]:
        return [
            {"probability": probability, "label": int(probability >= 0.5)}
            for probability in np.asarray(outputs, dtype=np.float64).tolist()
        ]

    def check_output(self, output: np.ndarray) -> str | None:
        if output.ndim != 1 or not np.all((output >= 0) & (output <= 1)):
            return "the model's outputs are not probabilities"
        return None


class MulticlassRules(_Classes):
    name = "multiclass"
    loss = "log_loss"
    report = ("accuracy", "macro_f1")
    lightgbm_metric = "multi_logloss"

    def lightgbm_params(self) -> dict[str, Any]:
        classes = len(self.contract.classes)
        return {"objective": "multiclass", "metric": "multi_logloss", "num_class": classes}

    def encode_label(self, value: Any) -> float | None:
        index = self._class_index(value)
        return None if index is None else float(index)

    def label_of(self, target: float) -> Scalar:
        return self.contract.classes[int(target)]

    def metrics(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score, log_loss

        targets = np.asarray(targets).astype(np.int64)
        outputs = np.clip(np.asarray(outputs, dtype=np.float64), _EPS, 1.0)
        outputs = outputs / outputs.sum(axis=1, keepdims=True)
        classes = list(range(len(self.contract.classes)))
        chosen = outputs.argmax(axis=1)
        return {
            "log_loss": float(log_loss(targets, outputs, labels=classes)),
            "accuracy": float(accuracy_score(targets, chosen)),
            "macro_f1": float(f1_score(targets, chosen, labels=classes, average="macro")),
        }

    def predictions(self, outputs: np.ndarray | Sequence[Any]) -> list[dict[str, Any]]:
        outputs = np.asarray(outputs, dtype=np.float64)
        classes = self.contract.classes
        names = [str(c) for c in classes]
        return [
            {"probabilities": dict(zip(names, row, strict=True)), "label": classes[best]}
            for row, best in zip(outputs.tolist(), outputs.argmax(axis=1).tolist(), strict=True)
        ]

    def check_output(self, output: np.ndarray) -> str | None:
        if output.ndim != 2 or output.shape[1] != len(self.contract.classes):
            return f"the model does not give {len(self.contract.classes)} class probabilities"
        if not np.allclose(output.sum(axis=1), 1.0, atol=1e-6):
            return "the model's class probabilities do not sum to 1"
        return None


class RegressionRules(TaskRules):
    name = "regression"
    loss = "rmse"
    report = ("mae", "r2")
    lightgbm_metric = "rmse"
    stratified = False

    def lightgbm_params(self) -> dict[str, Any]:
        return {"objective": "regression", "metric": "rmse"}

    def encode_label(self, value: Any) -> float | None:
        if type(value) not in (int, float) or not math.isfinite(value):
            return None
        return float(value)

    def label_of(self, target: float) -> Scalar:
        return float(target)

    def describe_label(self) -> str:
        return "a finite number"

    def metrics(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        targets = np.asarray(targets, dtype=np.float64)
        outputs = np.asarray(outputs, dtype=np.float64)
        r2 = float(r2_score(targets, outputs)) if len(targets) > 1 else math.nan
        return {
            "rmse": float(math.sqrt(mean_squared_error(targets, outputs))),
            "mae": float(mean_absolute_error(targets, outputs)),
            "r2": r2,
        }

    def predictions(self, outputs: np.ndarray | Sequence[Any]) -> list[dict[str, Any]]:
        return [{"value": value} for value in np.asarray(outputs, dtype=np.float64).tolist()]


_RULES: dict[str, type[TaskRules]] = {
    "binary": BinaryRules,
    "multiclass": MulticlassRules,
    "regression": RegressionRules,
}


def task_of(contract: Contract) -> TaskRules:
    """The rules of ``contract``'s task."""
    return _RULES[contract.task](contract)


def _key(value: Any) -> Any:
    """Labels compare as text with surrounding spaces removed (a CSV's ``" yes"``), and
    numbers by value: ``1`` and ``1.0`` are one class."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    return value


def _numeric_classes(contract: Contract) -> bool:
    return any(isinstance(c, int | float) and not isinstance(c, bool) for c in contract.classes)

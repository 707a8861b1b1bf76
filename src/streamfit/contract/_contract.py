"""The feature contract: what a model's requests carry, in JSON that travels with the model.

A contract names the task, the label and its classes, and every column a request may carry:
the model's features (numeric, categorical or datetime, each required or optional) and the
columns it knows but does not use (an ID, a time, ignored ones), so that producers sending
whole rows are not refused. Plain data, no pandas: a service that serves a model reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

Task = Literal["binary", "multiclass", "regression"]
Kind = Literal["numeric", "categorical", "datetime"]
ValueType = Literal["integer", "float", "string", "boolean", "datetime"]
Scalar = str | int | float | bool

TASKS: tuple[str, ...] = get_args(Task)
KINDS: tuple[str, ...] = get_args(Kind)
VALUE_TYPES: tuple[str, ...] = get_args(ValueType)
FORMAT = 1  # bumped when a contract written today could be misread by a later streamfit
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class ContractError(ValueError):
    """Data or a contract that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class ColumnSpec:
    """One feature: its kind, the type of its values, and what training saw of it.

    ``levels`` (categorical) are the values seen at least twice, in a fixed order: anything else
    is missing at serving time. ``minimum``/``maximum`` (numeric) and ``missing_rate`` describe
    the training data; they inform drift checks, they do not reject requests.
    """

    name: str
    kind: Kind
    type: ValueType
    required: bool = True
    levels: tuple[Scalar, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    missing_rate: float = 0.0

    def __post_init__(self) -> None:
        where = f"column {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise ContractError("a column needs a name")
        if not isinstance(self.required, bool):
            raise ContractError(f"{where}: required must be true or false")
        if self.kind not in KINDS:
            raise ContractError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.type not in VALUE_TYPES:
            raise ContractError(f"{where}: type must be one of {VALUE_TYPES}, got {self.type!r}")
        if self.kind != "categorical" and self.levels:
            raise ContractError(f"{where}: only categorical columns have levels")
        if len(set(self.levels)) != len(self.levels):
            raise ContractError(f"{where}: repeated levels")
        if self.kind != "numeric" and (self.minimum is not None or self.maximum is not None):
            raise ContractError(f"{where}: only numeric columns have a range")
        if not 0.0 <= self.missing_rate <= 1.0:
            raise ContractError(f"{where}: missing_rate must be within 0..1")

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "required": self.required,
            "missing_rate": self.missing_rate,
        }
        if self.kind == "categorical":
            entry["levels"] = list(self.levels)
        if self.kind == "numeric":
            entry["minimum"], entry["maximum"] = self.minimum, self.maximum
        return entry

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> ColumnSpec:
        _known_keys(
            entry,
            {"name", "kind", "type", "required", "levels", "minimum", "maximum", "missing_rate"},
            "a column",
        )
        return cls(
            name=entry.get("name", ""),
            kind=entry.get("kind"),  # type: ignore[arg-type]  # checked in __post_init__
            type=entry.get("type"),  # type: ignore[arg-type]
            required=entry.get("required", True),
            levels=tuple(entry.get("levels", ())),
            minimum=entry.get("minimum"),
            maximum=entry.get("maximum"),
            missing_rate=float(entry.get("missing_rate", 0.0)),
        )

    @property
    def json_type(self) -> str:
        """The JSON type of a value in a request: dates are strings, integers numbers."""
        return {"integer": "number", "float": "number", "datetime": "string"}.get(
            self.type, self.type
        )

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of this column's value in a request: its JSON type (``null`` too
        when optional). Unseen levels and out-of-range numbers are valid: the model reads them
        as missing or extrapolates, and the monitor counts them."""
        json_type = self.json_type
        schema: dict[str, Any] = {"type": json_type if self.required else [json_type, "null"]}
        if self.kind == "numeric" and self.minimum is not None:
            schema["description"] = f"numeric, {self.minimum} to {self.maximum} in training"
        elif self.kind == "categorical":
            schema["description"] = "categorical; other values are read as missing"
            if self.levels:
                schema["examples"] = list(self.levels)
        elif self.kind == "datetime":
            schema["description"] = "a date or a time, ISO 8601"
        return schema


@dataclass(frozen=True)
class Contract:
    """What a model predicts from what: the task, the label, its classes, the columns.

    ``classes`` is the class order of the model's probabilities (binary and multiclass;
    empty for regression); ``positive_class`` is the class a binary probability is about.
    ``columns`` are the features in the model's order; ``ignored``, ``id_column`` and
    ``time_column`` are columns a request may carry that the model does not use. ``crosses``
    are pairs of categorical columns the pipeline also gives the model crossed (a level per
    pair of levels seen together often enough); none unless the user names them.
    """

    task: Task
    label: str
    columns: tuple[ColumnSpec, ...]
    classes: tuple[Scalar, ...] = ()
    positive_class: Scalar | None = None
    id_column: str | None = None
    time_column: str | None = None
    ignored: tuple[str, ...] = field(default=())
    crosses: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ContractError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.label:
            raise ContractError("the contract needs a label column")
        if not self.columns:
            raise ContractError("the contract has no feature column")
        if len(set(self.classes)) != len(self.classes):
            raise ContractError("repeated classes")
        if self.task == "regression" and (self.classes or self.positive_class is not None):
            raise ContractError("a regression contract has no classes")
        if self.task == "binary" and (
            len(self.classes) != 2 or self.positive_class not in self.classes
        ):
            raise ContractError("a binary contract needs two classes, one of them positive")
        if self.task == "multiclass" and (len(self.classes) < 2 or self.positive_class is not None):
            raise ContractError("a multiclass contract needs two classes or more, none positive")
        names = [self.label, *self.features, *self.unused_columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ContractError(f"column {repeated[0]!r} has more than one role")
        categorical = {spec.name for spec in self.columns if spec.kind == "categorical"}
        for pair in self.crosses:
            if len(pair) != 2 or not set(pair) <= categorical:
                raise ContractError(f"a cross needs two categorical columns, got {list(pair)}")

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.columns)

    @property
    def unused_columns(self) -> tuple[str, ...]:
        """Columns a request may carry that the model does not read: ID, time, ignored."""
        roles = (self.id_column, self.time_column)
        return (*(name for name in roles if name is not None), *self.ignored)

    def names(self, kind: Kind) -> tuple[str, ...]:
        """The features of one kind, in the model's order."""
        return tuple(spec.name for spec in self.columns if spec.kind == kind)

    def column(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "task": self.task,
            "label": self.label,
            "classes": list(self.classes),
            "positive_class": self.positive_class,
            "id_column": self.id_column,
            "time_column": self.time_column,
            "columns": [spec.to_dict() for spec in self.columns],
            "ignored": list(self.ignored),
            "crosses": [list(pair) for pair in self.crosses],
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Contract:
        _known_keys(entry, _CONTRACT_KEYS, "the contract")
        if entry.get("format", FORMAT) != FORMAT:
            raise ContractError(f"contract format {entry.get('format')!r}; this streamfit reads 1")
        columns = entry.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, dict) for c in columns):
            raise ContractError("'columns' must be a list of objects")
        return cls(
            task=entry.get("task"),  # type: ignore[arg-type]  # checked in __post_init__
            label=entry.get("label", ""),
            columns=tuple(ColumnSpec.from_dict(column) for column in columns),
            classes=tuple(entry.get("classes", ())),
            positive_class=entry.get("positive_class"),
            id_column=entry.get("id_column"),
            time_column=entry.get("time_column"),
            ignored=tuple(entry.get("ignored", ())),
            crosses=tuple(tuple(pair) for pair in entry.get("crosses", ())),
        )

    def to_json(self) -> str:
        """Sorted keys, two-space indent, a final newline: the same contract, the same bytes
        (it sits inside a bundle's SHA-256)."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        return text + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Contract:
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"the contract is not JSON (line {exc.lineno})") from None
        if not isinstance(entry, dict):
            raise ContractError("the contract must be a JSON object")
        return cls.from_dict(entry)

    def save(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically: a failed write leaves nothing half
        written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", delete=False
        ) as tmp:
            tmp.write(self.to_json())
        os.replace(tmp.name, path)

    @classmethod
    def load(cls, path: Path) -> Contract:
        try:
            return cls.from_json(Path(path).read_bytes())
        except OSError as exc:
            raise ContractError(f"{path}: cannot read it ({exc.strerror})") from None

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of a valid request's ``data``: every required feature
        present and of its type, optional ones may be null or absent, the label may ride along,
        and a column the contract does not know is refused."""
        properties = {spec.name: spec.json_schema() for spec in self.columns}
        for name in self.unused_columns:
            properties[name] = {"description": "known to the contract, not used by the model"}
        if self.task == "regression":
            properties[self.label] = {"type": ["number", "null"]}
        else:
            properties[self.label] = {"enum": [*self.classes, None]}
        properties[self.label]["description"] = "the true label, when it rides along"
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "title": f"the data of a request to a {self.task} model of {self.label!r}",
            "type": "object",
            "properties": properties,
            "required": [spec.name for spec in self.columns if spec.required],
            "additionalProperties": False,
        }


def check_backward(serving: Contract, candidate: Contract) -> list[str]:
    """Why ``candidate`` cannot replace ``serving`` without breaking today's producers or
    consumers (Schema Registry's BACKWARD rule: the new reader reads what is written now);
    empty when it can. Same task, label and classes; no new required column; no type change.
    New levels, new optional columns and dropped columns are fine.

    >>> size = ColumnSpec("size", "numeric", "float")
    >>> serving = Contract("binary", "y", (size,), classes=("no", "yes"), positive_class="yes")
    >>> check_backward(serving, serving)
    []
    >>> colour = ColumnSpec("colour", "categorical", "string", levels=("red",))
    >>> check_backward(serving, Contract("binary", "y", (size, colour), ("no", "yes"), "yes"))
    ["column 'colour' becomes required (new)"]
    """
    reasons = []
    for what in ("task", "label", "positive_class"):
        before, after = getattr(serving, what), getattr(candidate, what)
        if before != after:
            reasons.append(f"{what.replace('_', ' ')} changes from {before!r} to {after!r}")
    if set(serving.classes) != set(candidate.classes):
        reasons.append(f"classes change from {list(serving.classes)} to {list(candidate.classes)}")
    served = {spec.name: spec for spec in serving.columns}
    for spec in candidate.columns:
        before = served.get(spec.name)
        if spec.required and (before is None or not before.required):
            state = "new" if before is None else "optional today"
            reasons.append(f"column {spec.name!r} becomes required ({state})")
        if before is not None and (before.kind, before.json_type) != (spec.kind, spec.json_type):
            reasons.append(
                f"column {spec.name!r} changes from {before.kind} ({before.json_type}) "
                f"to {spec.kind} ({spec.json_type})"
            )
    return reasons


_CONTRACT_KEYS = {
    "format",
    "task",
    "label",
    "classes",
    "positive_class",
    "id_column",
    "time_column",
    "columns",
    "ignored",
    "crosses",
}


def _known_keys(entry: Mapping[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ContractError(f"{what} has an unknown key {unknown[0]!r}")

"""A request's ``data`` checked against a contract: one msgspec type per contract, and the
words for what a refused message got wrong."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Any

import msgspec

from ..contract import ColumnSpec, Contract, task_of

_VALUE_TYPES: dict[str, Any] = {
    "integer": int,
    "float": int | float,
    "string": str,
    "boolean": bool,
    "datetime": str,
}
_WORDS = {
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "float": "a number",
    "datetime": "a date string",
}


class RequestSchema:
    """The requests a contract accepts, as msgspec checks them while decoding (in C): every
    required column present and not null, numbers JSON numbers within float range (not
    booleans), categories of their type, dates strings, null or absent is missing for an
    optional column; the label and the contract's unused columns may ride along; any other
    column is refused unless ``extra_columns == "ignore"``. :meth:`problem` words the reason
    of a message msgspec refused."""

    def __init__(self, contract: Contract, extra_columns: str = "refuse") -> None:
        if extra_columns not in ("refuse", "ignore"):
            raise ValueError(f"extra_columns must be 'refuse' or 'ignore', got {extra_columns!r}")
        self.contract = contract
        self.rules = task_of(contract)  # how its labels read (the recorder's, once per schema)
        self.ignore_extra = extra_columns == "ignore"
        self._specs = {spec.name: spec for spec in contract.columns}
        self._riders = frozenset((contract.label, *contract.unused_columns))
        self.columns: tuple[str, ...] = (*contract.features, *sorted(self._riders))
        # Attributes are f0, f1...: a column's name need not be an identifier ("mean radius");
        # msgspec reads each from its JSON key.
        self.attributes = {name: f"f{i}" for i, name in enumerate(self.columns)}
        fields = [_field(spec, self.attributes[spec.name]) for spec in contract.columns]
        fields += [
            (self.attributes[name], Any, msgspec.field(default=None, name=name))
            for name in sorted(self._riders)
        ]
        self.record = msgspec.defstruct(
            "Record",
            fields,
            kw_only=True,
            forbid_unknown_fields=not self.ignore_extra,
            gc=False,  # scalars only: no reference cycles to collect
        )
        request = msgspec.defstruct(
            "Request",
            [("request_id", Annotated[str, msgspec.Meta(min_length=1)]), ("data", self.record)],
            gc=False,
        )
        self.decode = msgspec.json.Decoder(request).decode

    def as_columns(self, records: list[Any], columns: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """Decoded records as columns: name -> the records' values."""
        return {name: tuple(map(attrgetter(self.attributes[name]), records)) for name in columns}

    def problem(self, data: Any) -> str | None:
        """Why ``data`` cannot be predicted, or None when it can; never raises."""
        if not isinstance(data, dict):
            return f"'data' must be an object, got {type(data).__name__}"
        for name, value in data.items():
            spec = self._specs.get(name)
            if spec is not None:
                problem = _value_problem(spec, value)
                if problem:
                    return problem
            elif name not in self._riders and not self.ignore_extra:
                return f"unknown column {name!r}"
        for name, spec in self._specs.items():
            if spec.required and data.get(name) is None:
                return f"missing required column {name!r}"
        return None


@functools.lru_cache(maxsize=16)
def request_schema(contract: Contract, extra_columns: str = "refuse") -> RequestSchema:
    """The schema of ``contract``'s requests, built once per contract."""
    return RequestSchema(contract, extra_columns)


def decoded_type(spec: ColumnSpec) -> Any:
    """The type msgspec decodes a column's values into (null aside): a numeric column takes any
    JSON number, whatever the type of its training values; a category its type's values."""
    return int | float if spec.kind == "numeric" else _VALUE_TYPES[spec.type]


def _field(spec: ColumnSpec, attribute: str) -> tuple[Any, ...]:
    value_type = decoded_type(spec)
    if spec.required:
        return (attribute, value_type, msgspec.field(name=spec.name))
    return (attribute, value_type | None, msgspec.field(default=None, name=spec.name))


def _value_problem(spec: ColumnSpec, value: Any) -> str | None:
    name = spec.name
    if value is None:
        return f"column {name!r} is required, got null" if spec.required else None
    if spec.kind == "numeric":
        if type(value) not in (int, float):  # excludes bool, a subclass of int
            return f"column {name!r} must be a number, got {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"column {name!r} must be finite"
        return None
    expected = _VALUE_TYPES[spec.type]
    if spec.type == "integer":
        valid = type(value) is int
    else:
        valid = isinstance(value, expected) and not (expected is not bool and type(value) is bool)
    if not valid:
        what = _WORDS[spec.type]
        return f"column {name!r} must be {what}, got {type(value).__name__}"
    return None

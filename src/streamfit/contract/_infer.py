"""A contract inferred from a table, each decision with the reason it was taken.

The rules (prior art: AutoGluon's and FLAML's), any override of the user winning:

* **Task**, from the label: two distinct values → binary; strings, or few distinct integers
  (at most 100, and at most 10 % of the rows, 5 % past 1,000 rows) → multiclass; otherwise
  regression. Rows without a label are dropped and counted.
* **Classes**: sorted; for binary the positive class is the minority class unless told.
* **Columns**: numbers → numeric; dates (a format pandas can infer, parsing at least 80 % of
  the distinct values) → datetime; strings and booleans → categorical, with the levels seen at
  least twice (rarer and unseen values are missing at serving time). Dropped with a warning:
  columns without values, constant columns, free text (more than 1 % distinct, three words or
  more on average) and ID-like text (more than 99 % distinct).
* A column a request may leave out (missing values in training) is optional, the others required.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pandas.api import types as ptypes

from ._contract import ColumnSpec, Contract, ContractError, Kind, Scalar, Task, ValueType
from ._sources import read_source
from ._types import as_datetimes, json_scalar, typed

TaskChoice = Literal["auto", "binary", "multiclass", "regression"]
Role = Literal["feature", "label", "id", "time", "ignored", "dropped"]

# AutoGluon allows 1,000; flights' arr_delay (577 distinct minutes) is a quantity, not classes.
MAX_INTEGER_CLASSES = 100
MIN_LEVEL_COUNT = 2
ID_LIKE_SHARE = 0.99
TEXT_DISTINCT_SHARE = 0.01
TEXT_WORDS = 3.0
MOSTLY_UNIQUE_SHARE = 0.5  # a categorical past this may be an identifier: say so
_FORCED_KINDS: dict[str, Kind] = {"--categorical": "categorical", "--numeric": "numeric"}
_UNUSED_ROLES: dict[str, Role] = {
    "--id-column": "id",
    "--time-column": "time",
    "--ignore": "ignored",
}


@dataclass(frozen=True)
class Decision:
    """What became of one column, and why: one line of ``streamfit contract infer``'s table."""

    column: str
    role: Role
    kind: str  # the feature's kind, else the role
    type: str
    summary: str  # levels or range
    missing_rate: float
    reason: str

    @property
    def warning(self) -> bool:
        """Dropped by a rule, not by the user: worth a second look."""
        return self.role == "dropped"


@dataclass(frozen=True)
class Inference:
    """The contract, the decision taken for each column, and notes on the task and the rows."""

    contract: Contract
    decisions: tuple[Decision, ...]
    notes: tuple[str, ...]
    rows: int
    unlabelled_rows: int


def infer_source(
    source: str,
    label: str,
    *,
    table: str | None = None,
    query: str | None = None,
    **overrides: Any,
) -> Inference:
    """:func:`infer` on the rows of a file or a database (see :func:`read_source`)."""
    return infer(read_source(source, table=table, query=query), label, **overrides)


def infer(
    frame: pd.DataFrame,
    label: str,
    task: TaskChoice = "auto",
    *,
    categorical: Iterable[str] = (),
    numeric: Iterable[str] = (),
    ignore: Iterable[str] = (),
    id_column: str | None = None,
    time_column: str | None = None,
    positive_class: Scalar | None = None,
) -> Inference:
    """Infer the contract of a model predicting ``label`` from the other columns of ``frame``.

    Raises ContractError (one line) for data nothing can be learnt from: no rows, no such label
    column, a label with one value, a column of mixed types, no feature left.

    >>> frame = pd.DataFrame({
    ...     "size": [1.5, 2.0, 2.5, 3.0, 3.5, 4.0],
    ...     "colour": ["red", "blue", "red", "blue", "red", "green"],
    ...     "y": ["no", "no", "yes", "no", "yes", "no"],
    ... })
    >>> inference = infer(frame, "y")
    >>> inference.contract.task, inference.contract.positive_class
    ('binary', 'yes')
    >>> for d in inference.decisions:
    ...     print(f"{d.column}: {d.kind}, {d.summary} ({d.reason})")
    size: numeric, 1.5 to 4 (numbers)
    colour: categorical, 2: blue, red (text; 1 value seen once becomes missing)
    y: label, no / yes (positive) (binary (2 distinct values in 'y'))
    """
    if frame.empty:
        raise ContractError("the table has no rows")
    if label not in frame.columns:
        raise ContractError(f"no label column {label!r}; the columns are {_listed(frame.columns)}")
    roles = _overrides(
        frame,
        label,
        {"--categorical": categorical, "--numeric": numeric, "--ignore": ignore},
        {"--id-column": id_column, "--time-column": time_column},
    )
    labelled = frame[label].notna()
    frame = frame[labelled]
    if frame.empty:
        raise ContractError(f"label column {label!r} has no values")
    task_, classes, positive, notes = _task(frame[label], label, task, positive_class)
    unlabelled = int((~labelled).sum())
    if unlabelled:
        notes.append(f"{unlabelled} of {len(labelled)} rows have no label: dropped")

    decisions, specs, ignored = [], [], []
    for name in frame.columns:
        role = roles.get(name)
        if name == label:
            why = notes[0].removeprefix("task: ")
            missing_rate = round(unlabelled / len(labelled), 4)
            decisions.append(_label_decision(frame[label], task_, classes, missing_rate, why))
        elif role in ("--id-column", "--time-column", "--ignore"):
            decisions.append(_unused_decision(name, frame[name], role))
            if role == "--ignore":
                ignored.append(name)
        else:
            spec, decision = _column(name, frame[name], _FORCED_KINDS.get(role or ""))
            decisions.append(decision)
            if spec is None:
                ignored.append(name)
            else:
                specs.append(spec)
    if not specs:
        raise ContractError(f"no feature column left beside the label {label!r}")
    contract = Contract(
        task=task_,
        label=label,
        columns=tuple(specs),
        classes=classes,
        positive_class=positive,
        id_column=id_column,
        time_column=time_column,
        ignored=tuple(ignored),
    )
    return Inference(contract, tuple(decisions), tuple(notes), len(frame), unlabelled)


def _overrides(
    frame: pd.DataFrame,
    label: str,
    lists: Mapping[str, Iterable[str]],
    single: Mapping[str, str | None],
) -> dict[str, str]:
    """Column → the option that names it; every named column exists, none is named twice."""
    roles: dict[str, str] = {}
    named = [(option, name) for option, names in lists.items() for name in names]
    named += [(option, name) for option, name in single.items() if name is not None]
    for option, name in named:
        if name not in frame.columns:
            raise ContractError(f"{option}: no column {name!r}")
        if name == label:
            raise ContractError(f"{option}: {name!r} is the label")
        if name in roles and roles[name] != option:
            raise ContractError(f"column {name!r} is given to both {roles[name]} and {option}")
        roles[name] = option
    return roles


def _task(
    labels: pd.Series, label: str, asked: TaskChoice, positive: Scalar | None
) -> tuple[Task, tuple[Scalar, ...], Scalar | None, list[str]]:
    """The task, the classes in order, the positive class, and notes (the first one says why)."""
    value_type, labels = typed(label, labels, check_mixed=False)
    if value_type == "datetime":
        raise ContractError(f"label column {label!r} holds dates: nothing streamfit predicts")
    counts = labels.value_counts()
    if len(counts) < 2:
        raise ContractError(
            f"label column {label!r} has one value ({json_scalar(counts.index[0])!r})"
        )
    numeric = value_type in ("integer", "float")
    rows, distinct = len(labels), len(counts)
    share = 0.05 if rows > 1000 else 0.1
    if asked == "auto":
        if distinct == 2:
            task: Task = "binary"
            why = "2 distinct values"
        elif not numeric:
            task, why = "multiclass", f"{distinct} distinct {value_type} values"
        elif value_type == "integer" and distinct <= min(MAX_INTEGER_CLASSES, share * rows):
            task = "multiclass"
            why = f"{distinct} distinct integers in {rows} rows (at most {share:.0%})"
        else:
            task, why = "regression", f"{distinct} distinct numbers in {rows} rows"
    elif asked in ("binary", "multiclass", "regression"):
        task, why = asked, f"--task {asked}"
        if task == "binary" and distinct != 2:
            raise ContractError(f"--task binary: label {label!r} has {distinct} distinct values")
        if task == "regression" and not numeric:
            raise ContractError(f"--task regression: label {label!r} is not numeric")
    else:
        raise ContractError(f"--task must be auto, binary, multiclass or regression, not {asked!r}")
    notes = [f"task: {task} ({why} in {label!r})"]
    if task == "regression":
        if positive is not None:
            raise ContractError("--positive-class is for a binary task; this one is regression")
        return task, (), None, notes
    classes = tuple(sorted(json_scalar(value) for value in counts.index))
    if task == "multiclass":
        if positive is not None:
            raise ContractError("--positive-class is for a binary task; this one is multiclass")
        notes.append(f"classes, in order: {_listed(classes)}")
        return task, classes, None, notes
    if positive is None:
        # The minority class; on a tie, the later one in sorted order (1 rather than 0).
        chosen = min(reversed(classes), key=lambda value: counts[_original(counts, value)])
        why = "the minority class"
    else:
        matches = [value for value in classes if str(value) == str(positive)]
        if not matches:
            raise ContractError(
                f"--positive-class {positive!r} is not a value of {label!r} ({_listed(classes)})"
            )
        chosen, why = matches[0], "--positive-class"
    share_of_rows = counts[_original(counts, chosen)] / rows
    notes.append(f"positive class: {chosen!r} ({why}, {share_of_rows:.1%} of the rows)")
    negative = next(value for value in classes if value != chosen)
    return task, (negative, chosen), chosen, notes


def _column(
    name: str, values: pd.Series, forced: Kind | None
) -> tuple[ColumnSpec | None, Decision]:
    """The spec of one feature (None: dropped) and the decision that says why."""
    rows = len(values)
    missing_rate = round(float(values.isna().mean()), 4)
    if forced == "numeric":
        if ptypes.is_bool_dtype(values):
            numbers = values.astype("float64")
        else:
            numbers = pd.to_numeric(values, errors="coerce")
        lost = int(numbers.isna().sum() - values.isna().sum())
        reason = "--numeric" + (
            f"; {lost} values that are not numbers become missing" if lost else ""
        )
        return _numeric(name, numbers, reason)
    raw = values
    value_type, values = typed(name, values, check_mixed=forced is None)
    present = values.dropna()
    if forced == "categorical":
        if value_type == "datetime":  # dates as categories: their text, as requests send it
            value_type, values = "string", raw.astype("str").where(raw.notna())
        return _categorical(name, values, value_type, "--categorical")
    if present.empty:
        return None, _dropped(name, value_type, "", missing_rate, "no values")
    distinct = present.nunique()
    if distinct == 1:
        only = json_scalar(present.iloc[0])
        return None, _dropped(name, value_type, repr(only), missing_rate, "constant")
    if value_type in ("integer", "float"):
        return _numeric(name, values, "numbers")
    if value_type == "datetime":
        return _datetime(name, values)
    if value_type == "string":
        words = present.str.count(r"\S+").mean()
        if distinct / len(present) > TEXT_DISTINCT_SHARE and words >= TEXT_WORDS:
            why = f"free text ({words:.1f} words on average)"
            return None, _dropped(name, value_type, f"{distinct} distinct", missing_rate, why)
        if distinct / len(present) > ID_LIKE_SHARE:
            why = f"ID-like ({distinct / len(present):.0%} distinct)"
            return None, _dropped(name, value_type, f"{distinct} distinct", missing_rate, why)
    reason = "true/false" if value_type == "boolean" else "text"
    if distinct / rows > MOSTLY_UNIQUE_SHARE:
        reason += (
            f"; {distinct / rows:.0%} distinct: if an identifier, pass --id-column or --ignore"
        )
    return _categorical(name, values, value_type, reason)


def _numeric(name: str, numbers: pd.Series, reason: str) -> tuple[ColumnSpec, Decision]:
    infinite = numbers.isin([float("inf"), float("-inf")])
    if infinite.any():  # no JSON number for them, and no range either
        numbers = numbers.mask(infinite)
        reason += f"; {int(infinite.sum())} infinite values become missing"
    present = numbers.dropna()
    whole = bool(((present % 1) == 0).all())
    value_type: ValueType = "integer" if whole else "float"
    low, high = (
        (json_scalar(present.min()), json_scalar(present.max())) if len(present) else (None, None)
    )
    spec = ColumnSpec(
        name,
        "numeric",
        value_type,
        required=not numbers.isna().any(),
        minimum=low,
        maximum=high,
        missing_rate=round(float(numbers.isna().mean()), 4),
    )
    summary = f"{low:g} to {high:g}" if low is not None else ""
    return spec, _feature(spec, summary, reason)


def _categorical(
    name: str, values: pd.Series, value_type: ValueType, reason: str
) -> tuple[ColumnSpec, Decision]:
    counts = values.value_counts()
    kept = counts[counts >= MIN_LEVEL_COUNT]
    rare = len(counts) - len(kept)
    if rare == 1:
        reason += "; 1 value seen once becomes missing"
    elif rare:
        reason += f"; {rare} values seen once become missing"
    levels = tuple(sorted(json_scalar(value) for value in kept.index))
    spec = ColumnSpec(
        name,
        "categorical",
        value_type,
        required=not values.isna().any(),
        levels=levels,
        missing_rate=round(float(values.isna().mean()), 4),
    )
    shown = _listed(levels, limit=4)
    return spec, _feature(spec, f"{len(levels)}: {shown}" if levels else "none", reason)


def _datetime(name: str, values: pd.Series) -> tuple[ColumnSpec, Decision]:
    times = as_datetimes(values)
    spec = ColumnSpec(
        name,
        "datetime",
        "datetime",
        required=not times.isna().any(),
        missing_rate=round(float(times.isna().mean()), 4),
    )
    present = times.dropna()
    dated = (present.dt.normalize() == present).all()
    low, high = (
        f"{t:%Y-%m-%d}" if dated else t.isoformat() for t in (present.min(), present.max())
    )
    return spec, _feature(spec, f"{low} to {high}", "dates and times: the model gets their parts")


def _label_decision(
    labels: pd.Series, task: Task, classes: tuple[Scalar, ...], missing_rate: float, why: str
) -> Decision:
    """The label's line: its classes or range; its missing rate is that of the rows dropped."""
    value_type, labels = typed(str(labels.name), labels, check_mixed=False)
    if task == "regression":
        summary = f"{json_scalar(labels.min()):g} to {json_scalar(labels.max()):g}"
    elif task == "binary":
        summary = f"{classes[0]} / {classes[1]} (positive)"
    else:
        summary = f"{len(classes)}: {_listed(classes, limit=4)}"
    return Decision(str(labels.name), "label", "label", value_type, summary, missing_rate, why)


def _unused_decision(name: str, values: pd.Series, option: str) -> Decision:
    role = _UNUSED_ROLES[option]
    value_type, values = typed(name, values, check_mixed=False)
    if role == "time" and value_type not in ("datetime", "integer", "float"):
        raise ContractError(f"--time-column {name!r} holds neither dates nor numbers")
    missing_rate = round(float(values.isna().mean()), 4)
    summary = f"{values.nunique()} distinct"
    return Decision(name, role, role, value_type, summary, missing_rate, option)


def _feature(spec: ColumnSpec, summary: str, reason: str) -> Decision:
    if not spec.required:
        reason += "; optional (missing values in training)"
    return Decision(spec.name, "feature", spec.kind, spec.type, summary, spec.missing_rate, reason)


def _dropped(name: str, value_type: str, summary: str, missing_rate: float, why: str) -> Decision:
    return Decision(name, "dropped", "dropped", value_type, summary, missing_rate, why)


def _original(counts: pd.Series, value: Scalar) -> Any:
    """The index entry of ``counts`` that :func:`_python` turned into ``value``."""
    return next(key for key in counts.index if json_scalar(key) == value)


def _listed(values: Iterable[Any], limit: int = 8) -> str:
    items = [str(value) for value in values]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f", … ({more} more)" if more > 0 else "")

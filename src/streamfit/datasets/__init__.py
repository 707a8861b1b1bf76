"""The table a model learns from: the user's (a CSV or Parquet file, or a database table or
query) with the contract inferred from it or edited, or the bundled example, UCI Adult.

:func:`load_dataset` gives the rows every round trains on and the test rows its model is
scored on, the label encoded by the contract's task (``label``: 0/1, a class index, a value).
``streamfit init --data`` remembers the source in ``<data_dir>/dataset.json`` (and writes the
contract beside it), so the services started on the same data directory need no flags.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Settings
from ..contract import Contract, ContractError, infer, read_source, task_of

SOURCE_FILE = "dataset.json"
TEST_FRACTION = 0.2
SPLIT_SEED = 20_241_206  # never change: the test rows must stay the same between rounds


@dataclass(frozen=True)
class Dataset:
    """A table's training and test rows (feature columns and the encoded ``label``) and the
    contract they follow. ``name`` says where they came from."""

    name: str
    contract: Contract
    train: pd.DataFrame
    test: pd.DataFrame
    unlabelled_rows: int = 0


@dataclass(frozen=True)
class Source:
    """Where a user's table is: a path or an SQLAlchemy URL, with a table or a query."""

    data: str
    table: str = ""
    query: str = ""

    def read(self) -> pd.DataFrame:
        return read_source(self.data, table=self.table or None, query=self.query or None)

    def save(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        record = {"data": self.data, "table": self.table, "query": self.query}
        (data_dir / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def of(cls, settings: Settings) -> Source | None:
        """The settings' source, else the one ``streamfit init`` remembered, else None (Adult)."""
        if settings.data:
            return cls(settings.data, settings.data_table, settings.data_query)
        remembered = settings.data_dir / SOURCE_FILE
        if remembered.exists():
            record = json.loads(remembered.read_text())
            return cls(record["data"], record.get("table", ""), record.get("query", ""))
        return None


def load_dataset(settings: Settings) -> Dataset:
    """The settings' table and contract (see the module docstring); ContractError, one line,
    when they cannot be used."""
    source = Source.of(settings)
    if source is None:
        return adult_dataset()
    contract = settings_contract(settings)
    return _load(source, contract or _inferred(source, settings))


def settings_contract(settings: Settings) -> Contract | None:
    """The contract file of the settings (``contract``, or ``streamfit init``'s), if any."""
    path = settings.contract_file
    if settings.contract or path.exists():
        return Contract.load(path)
    return None


def serving_contract(settings: Settings) -> Contract:
    """The contract of what is served, for a service that holds no model (the recorder):
    the contract file, else inferred from the data, else Adult's."""
    contract = settings_contract(settings)
    if contract is not None:
        return contract
    source = Source.of(settings)
    if source is None:
        from .adult import CONTRACT

        return CONTRACT
    return _inferred(source, settings)


def infer_from_settings(source: Source, settings: Settings) -> Any:
    """The :class:`~streamfit.contract.Inference` of ``source`` under the settings' choices."""
    if not settings.label:
        raise ContractError("--label is needed to infer a contract (or give --contract)")
    return infer(
        source.read(),
        settings.label,
        settings.task,  # type: ignore[arg-type]
        categorical=settings.categorical,
        numeric=settings.numeric,
        ignore=settings.ignore,
        id_column=settings.id_column or None,
        time_column=settings.time_column or None,
        positive_class=settings.positive_class or None,
    )


def remember_source(settings: Settings) -> Any:
    """``streamfit init --data``: the contract (the settings' file, else inferred) checked
    against the table and written to ``<data_dir>/contract.json``, the source to
    ``<data_dir>/dataset.json``; returns the inference (None for a given contract).
    ContractError, one line, for a table or contract that cannot be used; nothing is written
    then."""
    source = Source(settings.data, settings.data_table, settings.data_query)
    inference = None
    if settings.contract:
        contract = Contract.load(settings.contract_file)
    else:
        inference = infer_from_settings(source, settings)
        contract = inference.contract
    _load(source, contract)  # every feature and the label readable as the contract says
    contract.save(settings.data_dir / "contract.json")
    source.save(settings.data_dir)
    return inference


def _inferred(source: Source, settings: Settings) -> Contract:
    return infer_from_settings(source, settings).contract


@functools.lru_cache(maxsize=2)  # a trainer reads its table once, not every round
def _load(source: Source, contract: Contract) -> Dataset:
    frame = source.read()
    return split(frame, contract, name=Path(source.data).name or source.data)


def split(frame: pd.DataFrame, contract: Contract, name: str = "data") -> Dataset:
    """``frame``'s labelled rows, encoded and split into training and test rows (a fixed
    ``TEST_FRACTION``, stratified by class for classification)."""
    if contract.label not in frame.columns:
        raise ContractError(f"{name}: no label column {contract.label!r}")
    rules = task_of(contract)
    labels = rules.encode_labels(frame[contract.label].tolist())
    labelled = ~np.isnan(labels)
    if not labelled.any():
        raise ContractError(f"{name}: no row has a label the contract knows")
    columns = [c for c in contract.features if c in frame.columns]
    rows = frame.loc[labelled, columns].reset_index(drop=True)
    for spec in contract.columns:
        if spec.name not in rows.columns:
            rows[spec.name] = None
        elif spec.kind == "numeric":
            rows[spec.name] = pd.to_numeric(rows[spec.name], errors="coerce").astype("float64")
        elif spec.kind == "datetime":
            rows[spec.name] = rows[spec.name].astype(str).where(rows[spec.name].notna(), None)
    rows = rows[list(contract.features)]
    rows["label"] = labels[labelled]
    test = _held_rows(
        rows["label"].to_numpy(), TEST_FRACTION, SPLIT_SEED, rules.stratified, math.floor
    )
    train = rows[~test].reset_index(drop=True)
    return Dataset(name, contract, train, rows[test].reset_index(drop=True), int((~labelled).sum()))


# Never change: a new seed would move rows that earlier champions trained on into the holdout.
HOLDOUT_SEED = 20_240_601


def split_fixed_holdout(
    frame: pd.DataFrame, fraction: float, stratified: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): a ``fraction`` of the rows (``stratified``: of each label's), the same
    rows every time."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    held = _held_rows(frame["label"].to_numpy(), fraction, HOLDOUT_SEED, stratified, math.ceil)
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def _held_rows(
    labels: np.ndarray,
    fraction: float,
    seed: int,
    stratified: bool,
    rounding: Callable[[float], int],
) -> np.ndarray:
    """A mask of the same rows every time (a fixed ``seed``): ``rounding(fraction * n)`` rows
    of each class (``stratified``), or of all rows."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    groups = (
        [np.flatnonzero(labels == value) for value in np.unique(labels)]
        if stratified
        else [np.arange(len(labels))]
    )
    for rows in groups:
        held[rng.permutation(rows)[: rounding(fraction * len(rows))]] = True
    return held


def table_requests(dataset: Dataset, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` test rows of ``dataset`` as request data, cycling if needed, each with its
    true label (as the table has it) under the contract's label column; NaN becomes null and a
    whole float a JSON integer."""
    contract, test = dataset.contract, dataset.test
    rules = task_of(contract)
    order = np.random.default_rng(seed).permutation(len(test))
    rows = test.iloc[np.resize(order, count)]
    records = rows[list(contract.features)].to_dict("records")
    for record, target in zip(records, rows["label"].tolist(), strict=True):
        for name, value in record.items():
            if isinstance(value, float):
                if math.isnan(value):
                    record[name] = None
                elif value.is_integer() and abs(value) < 2**53:
                    record[name] = int(value)
        record[contract.label] = rules.label_of(target)
    return records


def adult_dataset() -> Dataset:
    """The bundled example: adult.data to train on, adult.test to score."""
    from .adult import CONTRACT

    return Dataset("adult", CONTRACT, _adult("train"), _adult("test"))


@functools.cache
def _adult_cached(split_name: str) -> pd.DataFrame:
    from .adult import load_adult

    return load_adult(split_name)  # type: ignore[arg-type]


def _adult(split_name: str) -> pd.DataFrame:
    return _adult_cached(split_name).copy()


__all__ = [
    "HOLDOUT_SEED",
    "Dataset",
    "Source",
    "adult_dataset",
    "infer_from_settings",
    "load_dataset",
    "remember_source",
    "serving_contract",
    "settings_contract",
    "split",
    "split_fixed_holdout",
    "table_requests",
]

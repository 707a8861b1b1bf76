"""``streamfit drift``: compare two files of rows, outside any stream: over a model's contract
columns, over named columns, or (by default) over every column the files share; rows of the
bundled example are compared over its contract.

The verdict is information, not failure: the exit code is 0 whether or not the data drifted,
and 2 only for input the command cannot use (missing or unreadable file, no feature columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..datasets import adult
from ..drift.detector import DriftDetector

if TYPE_CHECKING:
    from ..contract import Contract

EXIT_OK, EXIT_BAD_INPUT = 0, 2


class InputError(ValueError):
    """Input the user can fix; the message is one line."""


def read_table(path: Path) -> pd.DataFrame:
    """Read CSV (optionally gzipped) or Parquet; UCI Adult's own header-less files work too."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = _read_csv(path, header="infer")
            names = adult.headerless_columns(frame)
            if names is not None:  # adult.data / adult.test have no header row
                frame = _read_csv(path, header=None)
                frame.columns = names
    except InputError:
        raise
    except Exception as exc:  # pandas raises many kinds for unreadable files
        raise InputError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise InputError(f"{path}: no rows")
    return frame


def _read_csv(path: Path, header: str | None) -> pd.DataFrame:
    return pd.read_csv(
        path,
        header=header,
        skipinitialspace=True,
        na_values="?",
        comment="|",  # adult.test starts with a "|1x3 Cross validator" line
    )


MIN_ROWS = 10  # the domain classifier's folds need a few rows of each side


def drift_command(
    reference: Path,
    current: Path,
    json_out: Path | None = None,
    report_out: Path | None = None,
    *,
    columns: Sequence[str] | None = None,
    contract: Contract | None = None,
    own_columns: bool = False,
) -> tuple[int, str]:
    """Score ``current`` against ``reference``; return (exit code, text to print).

    The columns compared: ``contract``'s numeric and categorical ones (of their declared
    kinds), else ``columns``, else every column both files have (with ``own_columns``, even in
    rows of the bundled example, otherwise compared over its contract). ``json_out`` receives
    the drift event (same shape as on the ``drift`` topic); ``report_out`` an HTML page with
    the per-feature chart.
    """
    try:
        reference_frame = read_table(reference)
        current_frame = read_table(current)
        if contract is None and columns is None and not own_columns:
            contract = adult.contract_of_rows(reference_frame)
        kinds: dict[str, str] = {}
        if contract is not None:
            kinds = {c.name: c.kind for c in contract.columns if c.kind != "datetime"}
        if kinds:
            wanted, source = list(kinds), "contract"
        elif columns is not None:
            wanted, source = list(columns), "named"
        else:
            wanted, source = [str(c) for c in reference_frame.columns], "reference file's"
        usable = [c for c in wanted if c in reference_frame.columns and c in current_frame.columns]
        if not usable:
            raise InputError(
                f"no usable columns: {reference} and {current} share none of the {source} "
                f"columns ({', '.join(wanted)})"
            )
        rows = min(len(reference_frame), len(current_frame))
        if rows < MIN_ROWS:
            raise InputError(
                f"too few rows to compare: {len(reference_frame)} and {len(current_frame)} "
                f"(at least {MIN_ROWS} in each file)"
            )
        try:
            detector = DriftDetector(usable, column_kinds=kinds).fit(reference_frame)
            report = detector.score(current_frame, window_end=len(current_frame))
        except ValueError as exc:  # e.g. a numeric column with no numbers in it
            raise InputError(f"unusable input: {exc}") from exc
    except InputError as exc:
        return EXIT_BAD_INPUT, f"error: {exc}"

    lines = [report.table()]
    missing = [c for c in wanted if c not in usable]
    if missing:
        lines.append(f"not compared (absent from a file): {', '.join(missing)}")
    try:
        if json_out is not None:
            Path(json_out).write_bytes(report.to_json())
            lines.append(f"wrote {json_out}")
        if report_out is not None:
            Path(report_out).write_text(report.to_html(), encoding="utf-8")
            lines.append(f"wrote {report_out}")
    except OSError as exc:
        return EXIT_BAD_INPUT, f"error: cannot write output: {exc}"
    return EXIT_OK, "\n".join(lines)


__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "InputError", "drift_command", "read_table"]

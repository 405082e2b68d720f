"""User-supplied scenario data: CSV files with a header row, checked against the model's features.

A data file's header names the model's features (any order; no other columns); its rows are read against the
artifact's schema (testbed/tabular.py: numbers, or category strings for a user's string features) and come
back in the model's feature order. A truth file has one 0/1 column (any header) and as many rows as the data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from testbed import tabular
from testbed.errors import UserDataError


def read_rows(path, features) -> np.ndarray:
    """The CSV's rows as a float64 array of shape (n, len(features)) in the model's order; UserDataError if not
    usable. `features`: the artifact's typed features (Artifact.features)."""
    return tabular.read_rows(path, list(features))


def read_truth(path, n_rows: int) -> np.ndarray:
    """A 0/1 column of n_rows labels (1 = outlier) as an int array; UserDataError if not usable."""
    path = Path(path)
    header, rows = _read(path)
    if len(header) != 1:
        raise UserDataError(path, f"a truth file has exactly one column (0/1 per data row), this one has "
                            f"{len(header)}: {','.join(header)!r}")
    values = _numeric(path, rows, 1)[:, 0]
    if not np.isin(values, (0.0, 1.0)).all():
        bad = int(np.flatnonzero(~np.isin(values, (0.0, 1.0)))[0])
        raise UserDataError(path, f"line {bad + 2}: truth values must be 0 or 1, got {values[bad]!r}")
    if len(values) != n_rows:
        raise UserDataError(path, f"it has {len(values)} labels but the data file has {n_rows} rows; "
                            f"give one label per data row")
    return values.astype(np.int64)


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise UserDataError(path, "no such file")
    try:
        with open(path, newline="") as fh:
            lines = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserDataError(path, f"cannot be read as CSV ({exc})") from None
    if not lines:
        raise UserDataError(path, "it is empty; it needs a header row and at least one data row")
    if len(lines) == 1:
        raise UserDataError(path, "it has a header but zero data rows")
    return lines[0], lines[1:]


def _numeric(path: Path, rows: list[list[str]], width: int) -> np.ndarray:
    out = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise UserDataError(path, f"line {i + 2} has {len(row)} fields, expected {width}")
        try:
            out[i] = [float(c) for c in row]
        except ValueError:
            raise UserDataError(path, f"line {i + 2} has a non-numeric field: {row!r}") from None
    if not np.isfinite(out).all():
        i = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise UserDataError(path, f"line {i + 2} has a NaN or infinite value: {rows[i]!r}")
    return out

"""Tabular data a user brings: a CSV file with a header row, read as a stream, typed column by column.

The reference CSV of `up --model M --reference REF.csv` becomes the artifact's schema (each feature's
dtype, kind and categories) and its encoded rows; the CSVs given to probes are read against that schema.

Rows inside the testbed are float64 arrays in the model's feature order. A categorical feature whose values
are numbers keeps its values; one whose values are strings is held as the index of its value in the
feature's `categories` (the reference's values, sorted), and a value never seen in the reference gets the
code `len(categories)` ("unseen"): the wire encoder (testbed/v2.py) turns codes back into strings.

Limits: a file larger than MAX_BYTES is refused with its size (it is never read whole); a reference with
more than `max_rows` rows is reduced to a seeded uniform sample of `max_rows` rows while streaming (the
count read and kept is recorded). Every row is checked: field count, missing values (empty, NA, NaN,
null), infinities.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed.errors import UserDataError

MAX_BYTES = 512 * 1024 ** 2
"""Largest CSV the testbed reads (a reference or a probe's data). Reading is streamed, but every row of
a probe's data is sent through every platform: half a gigabyte of rows is already hours of traffic."""

MAX_REFERENCE_ROWS = 50_000
"""A larger reference is sampled down to this many rows (uniformly, seeded): the detectors and the
explainer's background use a few thousand; the scenarios draw from the held-out part."""

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
INFINITE = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})

MAX_AUTO_CATEGORIES = 10
"""A column of whole numbers with at most this many distinct values (in at least 5x as many rows) is
taken as categorical unless declared numeric (`--numeric`)."""

NUMERIC, CATEGORICAL = "numeric", "categorical"
FLOAT, INT, STRING = "float64", "int64", "string"


def human_size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


@dataclass(frozen=True)
class RawTable:
    """A CSV's header and (possibly sampled) rows as strings, with how they were read."""

    path: Path
    header: tuple[str, ...]
    rows: list[list[str]] = field(repr=False)
    rows_read: int
    """Data rows in the file (all of them were checked)."""

    line_of: list[int] = field(repr=False)
    """The file line of each kept row (1 = the header), for error messages."""

    def column(self, name: str) -> list[str]:
        j = self.header.index(name)
        return [r[j] for r in self.rows]


def read_csv(path, max_rows: int | None = None, seed: int = 0, max_bytes: int = MAX_BYTES,
             what: str = "data") -> RawTable:
    """Stream a CSV: check every row, keep all rows or a seeded uniform sample of `max_rows` (reservoir).
    UserDataError naming the line and the fix for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserDataError(path, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise UserDataError(path, f"it is empty (0 bytes); the {what} needs a header row of column names and "
                                  f"at least one data row")
    if size > max_bytes:
        raise UserDataError(path, f"it is {human_size(size)}, larger than the {human_size(max_bytes)} the testbed "
                                  f"reads; take a uniform sample of its rows first, e.g. "
                                  f"`(head -n 1 {path.name}; tail -n +2 {path.name} | shuf -n 50000) > sample.csv`")
    rng = np.random.default_rng(seed)
    rows: list[list[str]] = []
    lines: list[int] = []
    header: list[str] | None = None
    n = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for record in reader:
                if not record or not any(c.strip() for c in record):
                    continue
                line = reader.line_num
                if header is None:
                    header = [h.strip() for h in record]
                    _check_header(path, header)
                    continue
                if len(record) != len(header):
                    raise UserDataError(path, f"line {line} has {len(record)} fields, the header has {len(header)}")
                cells = [c.strip() for c in record]
                _check_cells(path, header, cells, line)
                if max_rows is None or n < max_rows:
                    rows.append(cells)
                    lines.append(line)
                else:
                    j = int(rng.integers(0, n + 1))
                    if j < max_rows:
                        rows[j] = cells
                        lines[j] = line
                n += 1
    except UnicodeDecodeError as exc:
        raise UserDataError(path, f"it is not UTF-8 text (byte {exc.start}: {exc.reason}); is it a CSV file?") \
            from None
    except csv.Error as exc:
        raise UserDataError(path, f"it cannot be read as CSV ({exc})") from None
    if header is None:
        raise UserDataError(path, f"it holds only blank lines; the {what} needs a header row and data rows")
    if n == 0:
        raise UserDataError(path, "it has a header but zero data rows")
    return RawTable(path=path, header=tuple(header), rows=rows, rows_read=n, line_of=lines)


def _check_header(path: Path, header: list[str]) -> None:
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise UserDataError(path, f"header column(s) {empty} have no name; the first row must name every column")
    seen, dup = set(), []
    for h in header:
        if h in seen:
            dup.append(h)
        seen.add(h)
    if dup:
        raise UserDataError(path, f"the header names {', '.join(sorted(set(dup)))} more than once")
    if all(_is_number(h) for h in header):
        raise UserDataError(path, f"its first row ({','.join(header[:6])}{'...' if len(header) > 6 else ''}) is "
                                  f"all numbers: the file needs a header row of column names")


def _check_cells(path: Path, header: list[str], cells: list[str], line: int) -> None:
    for name, cell in zip(header, cells):
        low = cell.lower()
        if low in MISSING:
            raise UserDataError(path, f"line {line}, column {name!r}: missing value ({cell!r}). The testbed needs "
                                      f"complete rows (every platform must get the same input): impute or drop "
                                      f"rows with missing values first")
        if low in INFINITE:
            raise UserDataError(path, f"line {line}, column {name!r}: infinite value ({cell!r}); replace or drop it")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# --- schema -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    """FLOAT, INT or STRING: what the column holds in the reference (and on the wire)."""

    kind: str
    """NUMERIC or CATEGORICAL: which drift test and which outliers apply."""

    categories: tuple = ()
    """CATEGORICAL: the reference's values, sorted (numbers as numbers, strings as strings)."""

    why: str = ""
    """How the kind was decided (declared, strings, few whole-number values, ...)."""

    def to_json(self) -> dict:
        out = {"name": self.name, "dtype": self.dtype, "kind": self.kind, "why": self.why}
        if self.kind == CATEGORICAL:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_json(cls, d: dict) -> "Feature":
        cats = tuple(d.get("categories") or ())
        dtype = d.get("dtype", FLOAT)
        return cls(name=d["name"], dtype=STRING if dtype == STRING else (INT if dtype == INT else FLOAT),
                   kind=d.get("kind", NUMERIC), categories=cats, why=d.get("why", ""))

    @property
    def coded(self) -> bool:
        """Held as category codes inside the testbed (strings on the wire)."""
        return self.kind == CATEGORICAL and self.dtype == STRING


def infer_schema(table: RawTable, columns: list[str], categorical=(), numeric=()) -> list[Feature]:
    """The typed features `columns` of `table` (in that order). `categorical` / `numeric`: names declared by
    the user, which override what the data suggests; a declared name that is not a column is an error."""
    declared_c, declared_n = set(categorical), set(numeric)
    for flag, names in (("--categorical", declared_c), ("--numeric", declared_n)):
        unknown = sorted(names - set(columns))
        if unknown:
            raise UserDataError(table.path, f"{flag} names {', '.join(unknown)}, which are not features of the "
                                            f"model (features: {', '.join(columns)})")
    both = sorted(declared_c & declared_n)
    if both:
        raise UserDataError(table.path, f"{', '.join(both)} declared both --categorical and --numeric")
    features = []
    for name in columns:
        values = table.column(name)
        numbers = _numbers(values)
        if numbers is None:
            if name in declared_n:
                bad = next(v for v in values if not _is_number(v))
                raise UserDataError(table.path, f"column {name!r} is declared --numeric but holds {bad!r}")
            cats = tuple(sorted(set(values)))
            why = "declared --categorical" if name in declared_c else "holds strings"
            features.append(Feature(name, STRING, CATEGORICAL, cats, why))
            continue
        whole = bool(np.all(np.floor(numbers) == numbers))
        distinct = np.unique(numbers)
        dtype = INT if whole else FLOAT
        if name in declared_c:
            features.append(Feature(name, dtype, CATEGORICAL, _plain(distinct, whole), "declared --categorical"))
        elif name not in declared_n and whole and len(distinct) <= MAX_AUTO_CATEGORIES \
                and len(numbers) >= 5 * len(distinct):
            features.append(Feature(name, dtype, CATEGORICAL, _plain(distinct, whole),
                                    f"{len(distinct)} distinct whole numbers in {len(numbers)} rows "
                                    f"(declare --numeric {name} if it is a quantity)"))
        else:
            features.append(Feature(name, dtype, NUMERIC, (),
                                    "declared --numeric" if name in declared_n else "numbers"))
    return features


def _numbers(values: list[str]) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None


def _plain(distinct: np.ndarray, whole: bool) -> tuple:
    return tuple(int(v) for v in distinct) if whole else tuple(float(v) for v in distinct)


def encode(table: RawTable, features: list[Feature], what: str = "data") -> np.ndarray:
    """The table's columns for `features` as float64 rows (string categories as codes; an unseen string gets
    the code len(categories)). UserDataError when a numeric feature holds a non-number."""
    out = np.empty((len(table.rows), len(features)), dtype=np.float64)
    for j, f in enumerate(features):
        if f.name not in table.header:
            raise UserDataError(table.path, f"it has no column {f.name!r}; the model's features are "
                                            f"{', '.join(x.name for x in features)}")
        values = table.column(f.name)
        if f.coded:
            index = {c: i for i, c in enumerate(f.categories)}
            out[:, j] = [index.get(v, len(f.categories)) for v in values]
            continue
        for i, v in enumerate(values):
            try:
                out[i, j] = float(v)
            except ValueError:
                raise UserDataError(table.path, f"line {table.line_of[i]}, column {f.name!r}: {v!r} is not a number, "
                                                f"but the model's {what} feature {f.name!r} is numeric ({f.dtype})") \
                    from None
    return out


def decode_column(feature: Feature, codes: np.ndarray) -> list:
    """Wire values of one feature's column: strings for coded features (UNSEEN for codes outside the
    categories), ints for whole-number features, floats otherwise."""
    codes = np.asarray(codes, dtype=np.float64)
    if feature.coded:
        cats = feature.categories
        return [cats[int(c)] if 0 <= c < len(cats) and c == int(c) else unseen_label(c) for c in codes]
    if feature.dtype == INT and np.all(np.floor(codes) == codes):
        return [int(c) for c in codes]
    return codes.tolist()


def unseen_label(code: float) -> str:
    """The string sent for a category code outside the reference's categories (planted impossible category)."""
    return f"unseen-category-{int(code) if float(code).is_integer() else code}"


def column_mismatch(names: list[str], columns: list[str]) -> tuple[list[str], list[str]]:
    """The model's feature names missing from the columns, and the columns the model does not take."""
    return [n for n in names if n not in columns], [c for c in columns if c not in names]


def read_rows(path, features: list[Feature], what: str = "data", max_bytes: int = MAX_BYTES) -> np.ndarray:
    """A probe's CSV (header = the model's feature names, in any order; extra columns refused) as encoded
    rows in the model's order."""
    table = read_csv(path, max_bytes=max_bytes, what=what)
    names = [f.name for f in features]
    missing, extra = column_mismatch(names, table.header)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"it lacks the model's feature(s) {', '.join(missing)}")
        if extra:
            parts.append(f"it has column(s) the model does not take: {', '.join(extra)}")
        raise UserDataError(path, "; ".join(parts) + f". The header must name the model's features: "
                                                     f"{','.join(names)}")
    return encode(table, features, what)

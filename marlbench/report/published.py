"""The papers' published numbers (``benchmarks/published/*.csv``), loaded and validated.

One CSV row is one printed table cell, in long format; ``benchmarks/published/README.md`` describes the
columns and the naming conventions. ``load_published`` checks every row and raises ``ConfigError`` naming the
file, the line, the field, what was expected and what was found. Imports only pandas, PyYAML and the standard
library (the report layer must not need torch).

Each cell may carry an annotation (the four ``ANNOTATION_COLUMNS`` after the transcription's own): whether
the authors' own code, run on that dataset, reproduces the printed number (``yes``, ``no``, ``not-checked``),
the value it gave, the metric of that value where it is not the cell's, and where the check is recorded. A
file without these columns leaves every cell ``not-checked``.

``papers.yaml`` beside the CSVs names each paper (its ``paper`` id -> the name captions and footnotes
print, ``comadice: ComaDICE``); :func:`load_paper_names` reads it, so adding a paper edits data only.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import yaml

from marlbench.errors import ConfigError, UnknownNameError

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "published"
PAPERS_FILE = "papers.yaml"
"""Beside the CSVs: paper id -> the paper's name in captions and footnotes."""

COLUMNS = (
    "paper",
    "table",
    "page",
    "suite",
    "task",
    "quality",
    "algo",
    "variant",
    "metric",
    "unit",
    "mean",
    "std",
    "note",
)
ANNOTATION_COLUMNS = ("authors_code", "authors_code_value", "authors_code_metric", "annotation_source")
ANNOTATED_COLUMNS = COLUMNS + ANNOTATION_COLUMNS
AUTHORS_CODE = ("yes", "no", "not-checked")
NOT_CHECKED = "not-checked"
NOT_REPRODUCED = "no"
# A published cell is identified by these; two rows of one table may not share them.
KEY = ("paper", "table", "suite", "task", "quality", "algo", "variant", "metric")

SUITES = ("mamujoco", "smacv1", "smacv2", "matrix")
# win_rate is "percent" where the paper prints 0-100 and "fraction" where it prints 0-1 (InSPO).
METRIC_UNITS: dict[str, tuple[str, ...]] = {
    "win_rate": ("percent", "fraction"),
    "return_mean": ("return",),
    "expected_return": ("return",),
    **{f"joint_action_prob_{joint}": ("probability",) for joint in ("aa", "ab", "ba", "bb")},
}

NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
VARIANT = re.compile(r"^(default|[a-z_]+=[a-z0-9.\-]+)$")
TABLE = re.compile(r"^Table [1-9][0-9]*$")
NAME_FIELDS = ("paper", "task", "quality", "algo")


def _invalid(path: Path, line: int, field: str, expected: str, found: object) -> ConfigError:
    return ConfigError(f"{path}:{line}: field '{field}': expected {expected}, found {found!r}")


def _number(path: Path, line: int, field: str, text: str, allow_empty: bool) -> float:
    if text == "" and allow_empty:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        expected = "a finite number" + (" or an empty cell" if allow_empty else "")
        raise _invalid(path, line, field, expected, text)
    return value


def _check_row(path: Path, line: int, row: dict[str, str]) -> dict[str, object]:
    for field in NAME_FIELDS:
        if not NAME.match(row[field]):
            raise _invalid(path, line, field, "a lower-case name of [a-z0-9_.-]", row[field])
    if not TABLE.match(row["table"]):
        raise _invalid(path, line, "table", "'Table <number>'", row["table"])
    if row["page"] and not row["page"].isdigit():
        raise _invalid(path, line, "page", "a page number or an empty cell", row["page"])
    if row["suite"] not in SUITES:
        raise _invalid(path, line, "suite", f"one of {', '.join(SUITES)}", row["suite"])
    if not VARIANT.match(row["variant"]):
        raise _invalid(path, line, "variant", "'default' or '<config field>=<value>'", row["variant"])
    if row["metric"] not in METRIC_UNITS:
        raise _invalid(path, line, "metric", f"one of {', '.join(METRIC_UNITS)}", row["metric"])
    units = METRIC_UNITS[row["metric"]]
    if row["unit"] not in units:
        raise _invalid(path, line, "unit", f"{' or '.join(units)} for metric {row['metric']}", row["unit"])
    mean = _number(path, line, "mean", row["mean"], allow_empty=False)
    std = _number(path, line, "std", row["std"], allow_empty=True)
    if std < 0:
        raise _invalid(path, line, "std", "a non-negative number or an empty cell", row["std"])
    return {
        **row,
        "page": int(row["page"]) if row["page"] else None,
        "mean": mean,
        "std": std,
        **_check_annotation(path, line, row),
    }


def _check_annotation(path: Path, line: int, row: dict[str, str]) -> dict[str, object]:
    """The annotation of a row (``not-checked`` where the file has no annotation columns)."""
    code = row.get("authors_code", NOT_CHECKED)
    value_text = row.get("authors_code_value", "")
    metric = row.get("authors_code_metric", "")
    source = row.get("annotation_source", "")
    if code not in AUTHORS_CODE:
        raise _invalid(path, line, "authors_code", f"one of {', '.join(AUTHORS_CODE)}", code)
    if code == NOT_CHECKED:
        for field, text in (("authors_code_value", value_text), ("authors_code_metric", metric)):
            if text:
                raise _invalid(path, line, field, "an empty cell where authors_code is not-checked", text)
        if source:
            raise _invalid(path, line, "annotation_source", "an empty cell where authors_code is not-checked", source)
        return {
            "authors_code": code,
            "authors_code_value": math.nan,
            "authors_code_metric": "",
            "annotation_source": "",
        }
    if not source.strip():
        raise _invalid(path, line, "annotation_source", f"where the check is recorded (authors_code is {code})", source)
    value = _number(path, line, "authors_code_value", value_text, allow_empty=code != NOT_REPRODUCED)
    if metric and math.isnan(value):
        raise _invalid(path, line, "authors_code_metric", "an empty cell where authors_code_value is empty", metric)
    metric = metric or (row["metric"] if not math.isnan(value) else "")
    if metric and metric != row["metric"] and len(METRIC_UNITS.get(metric, ())) != 1:
        single_unit = [name for name, units in METRIC_UNITS.items() if len(units) == 1]
        raise _invalid(
            path, line, "authors_code_metric", f"the row's metric or one of {', '.join(single_unit)}", metric
        )
    return {
        "authors_code": code,
        "authors_code_value": value,
        "authors_code_metric": metric,
        "annotation_source": source,
    }


def _read(path: Path, seen: dict[tuple[str, ...], str]) -> list[dict[str, object]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, None) or ())
        if header not in (ANNOTATED_COLUMNS, COLUMNS):
            expected = f"{','.join(ANNOTATED_COLUMNS)} or {','.join(COLUMNS)}"
            raise _invalid(path, 1, "header", expected, ",".join(header))
        rows = []
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise _invalid(path, line, "row", f"{len(header)} cells", f"{len(cells)} cells")
            row = _check_row(path, line, dict(zip(header, cells, strict=True)))
            key = tuple(str(row[field]) for field in KEY)
            if key in seen:
                raise _invalid(path, line, "key", f"a cell not already given at {seen[key]}", ",".join(key))
            seen[key] = f"{path}:{line}"
            rows.append(row)
    return rows


def _csv_files(paths: Path | str | Sequence[Path | str]) -> list[Path]:
    entries = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            found = sorted(entry.glob("*.csv"))
            if not found:
                raise ConfigError(f"{entry}: expected published-result CSV files (*.csv), found none")
            files += found
        elif entry.is_file():
            files.append(entry)
        else:
            raise ConfigError(
                f"{entry}: no such file or directory; the published numbers live in benchmarks/published/ "
                "of a marlbench source checkout"
            )
    return files


def load_published(paths: Path | str | Sequence[Path | str] = DEFAULT_DIR) -> pd.DataFrame:
    """Every row of the given CSV files (or of every ``*.csv`` in the given directories), validated.

    ``mean``, ``std`` and ``authors_code_value`` are floats (NaN where empty); ``page`` is a nullable
    integer; the other columns are strings (``note`` is "" where empty; ``authors_code_metric`` is the
    row's metric where a value is given without one, else "").
    """
    seen: dict[tuple[str, ...], str] = {}
    rows = [row for path in _csv_files(paths) for row in _read(path, seen)]
    frame = pd.DataFrame(rows, columns=list(ANNOTATED_COLUMNS))
    frame["page"] = frame["page"].astype("Int64")
    for column in ("mean", "std", "authors_code_value"):
        frame[column] = frame[column].astype(float)
    return frame


def _as_list(names: str | int | Iterable[str | int] | None) -> list[str | int] | None:
    if names is None:
        return None
    return [names] if isinstance(names, (str, int)) else list(names)


def published_for(
    frame: pd.DataFrame,
    paper: str | None = None,
    tables: str | int | Iterable[str | int] | None = None,
    metric: str | None = None,
) -> pd.DataFrame:
    """The rows of one paper, some of its tables (``3`` or ``"Table 3"``) and one metric; None keeps all.

    Raises ``UnknownNameError`` for a paper, table or metric that ``frame`` does not hold.
    """
    selected = frame
    if paper is not None:
        if paper not in set(frame["paper"]):
            raise UnknownNameError("paper", paper, set(frame["paper"]))
        selected = selected[selected["paper"] == paper]
    wanted = _as_list(tables)
    if wanted is not None:
        names = [f"Table {table}" if isinstance(table, int) else table for table in wanted]
        for name in names:
            if name not in set(selected["table"]):
                raise UnknownNameError("table", name, set(selected["table"]))
        selected = selected[selected["table"].isin(names)]
    if metric is not None:
        if metric not in set(selected["metric"]):
            raise UnknownNameError("metric", metric, set(selected["metric"]))
        selected = selected[selected["metric"] == metric]
    return selected.reset_index(drop=True)


def load_paper_names(directory: Path | str = DEFAULT_DIR) -> dict[str, str]:
    """``<directory>/papers.yaml``: paper id (the CSVs' ``paper`` column) -> the name captions print
    (``{"comadice": "ComaDICE"}``); empty where the file is absent (an installed package). A report
    names a paper without an entry by its id."""
    path = Path(directory) / PAPERS_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the paper names: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of paper id to name, found {type(data).__name__}")
    for paper, name in data.items():
        if not isinstance(paper, str) or not NAME.match(paper):
            raise ConfigError(f"{path}: key {paper!r}: expected a paper id of [a-z0-9_.-], found {paper!r}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: field '{paper}': expected the paper's name as printed, found {name!r}")
    return dict(data)

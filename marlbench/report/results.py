"""Read run directories into pandas frames: one row per run (``result.json``) or one row per
evaluation (the ``kind: eval`` lines of ``metrics.jsonl``).

Both readers need only the files ``marlbench.train`` writes, never torch or an algorithm, so a
grid's results can be reported on any machine that holds the run directories.

A file that cannot be read (cut off while written, edited by hand, another format) is skipped and
returned as a :class:`SkippedFile` naming the file, the field, what was expected and what was found;
the report lists these under its tables. ``load_results``/``load_curves`` warn about each instead.

Beside the run's keys and final scores a row carries what the report needs from the run's
``config.dataset.source`` (the dataset card's normalisation references, ``reference_returns``), from
``config.display`` (the algorithm's column heading and order when it ran: ``display_name``,
``column_order``) and from its ``provenance`` (commit, uncommitted changes, host, CPU model), where the
file has them.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

INSTANCE_KEYS = ["suite", "task", "quality"]
RUN_KEYS = INSTANCE_KEYS + ["algo", "variant", "seed"]
SCORE_COLUMNS = ["return_mean", "return_std", "win_rate", "expected_return"]
FINISHED = ("completed", "diverged")
# The pairs of reference returns a dataset card may record (``source.reference_returns``), the
# low end first: D4RL's random and expert returns, or a game's payoff range.
REFERENCE_PAIRS = {("random", "expert"): "random-expert", ("min", "max"): "payoff-range"}
REFERENCE_COLUMNS = ["reference_kind", "reference_low", "reference_high"]
PROVENANCE_COLUMNS = ["commit", "dirty", "host", "cpu"]
DISPLAY_COLUMNS = ["display_name", "column_order"]
RESULT_COLUMNS = [
    *RUN_KEYS,
    "profile",
    "status",
    "steps",
    "diverged_step",
    *SCORE_COLUMNS,
    "episodes",
    "wall_time_s",
    *REFERENCE_COLUMNS,
    *PROVENANCE_COLUMNS,
    *DISPLAY_COLUMNS,
    "run_dir",
]
CURVE_COLUMNS = [*RUN_KEYS, "profile", "step", *SCORE_COLUMNS, "episodes"]


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class _Unreadable(Exception):
    pass


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}
    return names.get(type(value), f"{type(value).__name__} {value!r}")


def _field_error(field: str, expected: str, value: Any, present: bool = True) -> _Unreadable:
    found = _kind(value) if present else "nothing"
    return _Unreadable(f"field '{field}': expected {expected}, found {found}")


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise _Unreadable(f"expected a JSON object, found invalid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise _Unreadable(f"expected a readable text file, found {type(error).__name__}: {error}") from None
    if not isinstance(data, dict):
        raise _Unreadable(f"expected a JSON object, found {_kind(data)}")
    return data


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _field_error(key, "a string", value, key in data)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _references(result: dict[str, Any]) -> dict[str, Any]:
    """The dataset card's reference returns travelling with the run, or NaN/None where the card has
    none or they are not a known pair of finite numbers (the report then falls back and says so)."""
    config = result.get("config")
    dataset = config.get("dataset") if isinstance(config, dict) else None
    source = dataset.get("source") if isinstance(dataset, dict) else None
    references = source.get("reference_returns") if isinstance(source, dict) else None
    if isinstance(references, dict):
        for (low, high), kind in REFERENCE_PAIRS.items():
            values = references.get(low), references.get(high)
            if all(_is_number(value) and math.isfinite(value) for value in values):
                return {"reference_kind": kind, "reference_low": values[0], "reference_high": values[1]}
    return {"reference_kind": None, "reference_low": math.nan, "reference_high": math.nan}


def _provenance(result: dict[str, Any]) -> dict[str, Any]:
    provenance = result.get("provenance")
    if not isinstance(provenance, dict):
        return dict.fromkeys(PROVENANCE_COLUMNS)
    commit, dirty, host, cpu = (provenance.get(key) for key in PROVENANCE_COLUMNS)
    return {
        "commit": commit if isinstance(commit, str) and commit else None,
        "dirty": dirty if isinstance(dirty, bool) else None,
        "host": host if isinstance(host, str) and host else None,
        "cpu": cpu if isinstance(cpu, str) and cpu else None,
    }


def _display(result: dict[str, Any]) -> dict[str, Any]:
    """The heading and column order the run recorded (None where it records none or a wrong type)."""
    config = result.get("config")
    display = config.get("display") if isinstance(config, dict) else None
    display = display if isinstance(display, dict) else {}
    name, order = display.get("display_name"), display.get("column_order")
    return {
        "display_name": name if isinstance(name, str) and name else None,
        "column_order": order if isinstance(order, int) and not isinstance(order, bool) else None,
    }


def _result_row(path: Path) -> dict[str, Any]:
    result = _read_object(path)
    keys = {key: _string(result, key) for key in RUN_KEYS + ["profile"] if key != "seed"}
    seed = result.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _field_error("seed", "an integer", seed, "seed" in result)
    status = result.get("status")
    if status not in FINISHED:
        raise _field_error("status", " or ".join(FINISHED), status, "status" in result)
    final = result.get("final")
    if final is not None and not isinstance(final, dict):
        raise _field_error("final", "an object or null", final)
    final = final or {}
    for key in SCORE_COLUMNS + ["episodes"]:
        if final.get(key) is not None and not _is_number(final[key]):
            raise _field_error(f"final.{key}", "a number or null", final[key])
    return {
        **keys,
        "seed": seed,
        "status": status,
        "steps": result.get("steps"),
        "diverged_step": result.get("diverged_step"),
        **{key: final.get(key) for key in SCORE_COLUMNS + ["episodes"]},
        "wall_time_s": result.get("wall_time_s"),
        **_references(result),
        **_provenance(result),
        **_display(result),
        "run_dir": str(path.parent),
    }


def read_results(results_dir: Path | str) -> tuple[pd.DataFrame, list[SkippedFile]]:
    """Every readable ``result.json`` below ``results_dir`` (a diverged run has NaN scores), and
    the files skipped as unreadable."""
    rows, skipped = [], []
    for path in sorted(Path(results_dir).rglob("result.json")):
        try:
            rows.append(_result_row(path))
        except _Unreadable as error:
            skipped.append(SkippedFile(path, str(error)))
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for column in SCORE_COLUMNS + ["wall_time_s", "reference_low", "reference_high"]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame, skipped


def _warn(skipped: list[SkippedFile]) -> None:
    for item in skipped:
        warnings.warn(f"skipped {item}", stacklevel=3)


def load_results(results_dir: Path | str) -> pd.DataFrame:
    """:func:`read_results`' frame; a warning names each skipped file."""
    frame, skipped = read_results(results_dir)
    _warn(skipped)
    return frame


def _profile_name(config: dict) -> str | None:
    profile = config.get("profile")
    return profile.get("name") if isinstance(profile, dict) else profile


def read_curves(results_dir: Path | str) -> tuple[pd.DataFrame, list[SkippedFile]]:
    """Every evaluation of every run below ``results_dir`` (finished or not), one row each, and the
    runs skipped because their ``config.json`` is unreadable.

    The run's keys and profile come from its ``config.json``; a line that is not valid JSON
    (a run killed while writing) is skipped.
    """
    rows, skipped = [], []
    for metrics_path in sorted(Path(results_dir).rglob("metrics.jsonl")):
        config_path = metrics_path.parent / "config.json"
        if not config_path.exists():
            continue
        try:
            config = _read_object(config_path)
        except _Unreadable as error:
            skipped.append(SkippedFile(config_path, str(error)))
            continue
        keys = {key: config.get(key) for key in RUN_KEYS}
        profile = _profile_name(config)
        for line in metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or record.get("kind") != "eval" or not _is_number(record.get("step")):
                continue
            rows.append(
                {
                    **keys,
                    "profile": profile,
                    "step": record["step"],
                    **{key: record.get(key) for key in SCORE_COLUMNS + ["episodes"]},
                }
            )
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    for column in SCORE_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["step"] = pd.to_numeric(frame["step"]).astype("int64")
    return frame, skipped


def load_curves(results_dir: Path | str) -> pd.DataFrame:
    """:func:`read_curves`' frame; a warning names each skipped file."""
    frame, skipped = read_curves(results_dir)
    _warn(skipped)
    return frame

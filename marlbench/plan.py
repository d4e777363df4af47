"""The grid plan file: what the machine that planned a benchmark's grid knew, kept beside its results
for the report, which reads files only (no registry, no torch, no simulator).

``marlbench grid`` (and ``make table1`` …, ``marlbench demo``, ``marlbench grid --plan-only``) plans
the grid with the algorithm and suite registries loaded and writes, atomically,
``<results>/<profile>/<benchmark name>.plan.json``::

    {"format": 1, "benchmark": "table3", "benchmark_file": "benchmarks/table3.yaml",
     "profile": "paper", "planned_at": "2025-01-31T12:00:00+00:00", "host": "…",
     "marlbench_version": "0.1.0",
     "algorithms": [{"name": "bc", "display_name": "BC", "column_order": 0, "registered": true}, …],
     "instances": ["mamujoco/hopper/expert", …],
     "cells": [{"algo": "bc", "instance": "mamujoco/hopper/expert", "status": "run", "reason": ""},
               {"algo": "omsd", "instance": "matrix/xor/ab", "status": "n/a",
                "reason": "omsd supports continuous actions; matrix/xor has discrete actions"}, …],
     "problems": ["what is missing here and how to get it", …]}

``algorithms`` lists the benchmark's algorithms (every registered one for ``algorithms: all``) in
column order, each with its column heading (``display_name``) and ``column_order``; an algorithm the
file names but no installation registers has ``registered: false``. ``cells`` holds one entry per
algorithm x instance with its ``status``: ``run`` (trials planned), ``n/a`` (the task's action space
is not the algorithm's), ``not implemented`` (no such algorithm registered), ``not available`` (the
suite is not installed or cannot run on the planning machine) or ``missing`` (no dataset there);
``reason`` says why for the last four. A report shows a status only in a cell without a finished
run, and ``not available`` / ``missing`` as ``not run`` with the reason under the table.

Standard library only: the report and the grid driver both use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from marlbench.errors import ConfigError

Instance = tuple[str, str, str]
CellKey = tuple[str, Instance]

PLAN_FORMAT = 1
PLAN_SUFFIX = ".plan.json"
RUN = "run"
NOT_APPLICABLE = "n/a"
NOT_IMPLEMENTED = "not implemented"
NOT_AVAILABLE = "not available"
MISSING = "missing"
STATUSES = (RUN, NOT_APPLICABLE, NOT_IMPLEMENTED, NOT_AVAILABLE, MISSING)
NOT_RUN = "not run"
"""How a report shows ``not available`` and ``missing`` cells (``not run: <reason>``)."""
DEFAULT_COLUMN_ORDER = 1000
"""The column order of an algorithm that records none (``Algorithm.column_order``'s default)."""


def plan_path(profile_results: Path | str, benchmark_name: str) -> Path:
    """``<results>/<profile>/<benchmark name>.plan.json``."""
    return Path(profile_results) / f"{benchmark_name}{PLAN_SUFFIX}"


def instance_text(instance: Instance) -> str:
    return "/".join(instance)


@dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    display_name: str
    column_order: int = DEFAULT_COLUMN_ORDER
    registered: bool = True

    def sort_key(self) -> tuple[int, str]:
        return (self.column_order, self.name)


@dataclass(frozen=True)
class CellPlan:
    algo: str
    instance: Instance
    status: str
    reason: str = ""

    @property
    def report_status(self) -> str | None:
        """What a report shows in this cell when it has no finished run (None: nothing, ``—``)."""
        if self.status == RUN:
            return None
        if self.status in (NOT_AVAILABLE, MISSING):
            return f"{NOT_RUN}: {self.reason}" if self.reason else NOT_RUN
        return self.status


@dataclass
class PlanFile:
    benchmark: str
    benchmark_file: str
    profile: str
    algorithms: list[AlgorithmEntry]
    instances: list[Instance]
    cells: list[CellPlan]
    problems: list[str] = field(default_factory=list)
    planned_at: str = ""
    host: str = ""
    marlbench_version: str = ""

    def cell_status(self) -> dict[CellKey, str]:
        """(algorithm, instance) -> the report's status of every cell that is not planned to run."""
        return {(cell.algo, cell.instance): text for cell in self.cells if (text := cell.report_status) is not None}

    def display(self) -> dict[str, AlgorithmEntry]:
        return {entry.name: entry for entry in self.algorithms}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "benchmark": self.benchmark,
            "benchmark_file": self.benchmark_file,
            "profile": self.profile,
            "planned_at": self.planned_at,
            "host": self.host,
            "marlbench_version": self.marlbench_version,
            "algorithms": [asdict(entry) for entry in self.algorithms],
            "instances": [instance_text(instance) for instance in self.instances],
            "cells": [
                {
                    "algo": cell.algo,
                    "instance": instance_text(cell.instance),
                    "status": cell.status,
                    "reason": cell.reason,
                }
                for cell in self.cells
            ],
            "problems": list(self.problems),
        }

    @classmethod
    def from_dict(cls, data: Any, where: Path | str) -> PlanFile:
        """Check every field; a wrong one raises ``ConfigError`` naming the file, the field, what
        was expected and what was found."""

        def fail(name: str, expected: str, found: Any) -> ConfigError:
            return ConfigError(f"{where}: field '{name}': expected {expected}, found {found!r}")

        if not isinstance(data, dict):
            raise fail("(file)", "a JSON object", type(data).__name__)
        if data.get("format") != PLAN_FORMAT:
            raise fail("format", str(PLAN_FORMAT), data.get("format"))

        def text(mapping: Mapping[str, Any], name: str, label: str | None = None) -> str:
            value = mapping.get(name)
            if not isinstance(value, str):
                raise fail(label or name, "a string", value)
            return value

        def items(name: str) -> list[Any]:
            value = data.get(name)
            if not isinstance(value, list):
                raise fail(name, "a list", value)
            return value

        def instance(value: Any, name: str) -> Instance:
            parts = value.split("/") if isinstance(value, str) else []
            if len(parts) != 3:
                raise fail(name, "suite/task/quality", value)
            return (parts[0], parts[1], parts[2])

        algorithms = []
        for entry in items("algorithms"):
            if not isinstance(entry, dict):
                raise fail("algorithms", "objects {name, display_name, column_order, registered}", entry)
            order = entry.get("column_order")
            if isinstance(order, bool) or not isinstance(order, int):
                raise fail("algorithms.column_order", "an integer", order)
            registered = entry.get("registered", True)
            if not isinstance(registered, bool):
                raise fail("algorithms.registered", "true or false", registered)
            name = text(entry, "name", "algorithms.name")
            display_name = text(entry, "display_name", "algorithms.display_name")
            algorithms.append(AlgorithmEntry(name, display_name, order, registered))
        cells = []
        for entry in items("cells"):
            if not isinstance(entry, dict):
                raise fail("cells", "objects {algo, instance, status, reason}", entry)
            status = entry.get("status")
            if status not in STATUSES:
                raise fail("cells.status", f"one of {', '.join(STATUSES)}", status)
            reason = entry.get("reason", "")
            if not isinstance(reason, str):
                raise fail("cells.reason", "a string", reason)
            algo = text(entry, "algo", "cells.algo")
            cells.append(CellPlan(algo, instance(entry.get("instance"), "cells.instance"), status, reason))
        problems = items("problems") if "problems" in data else []
        return cls(
            benchmark=text(data, "benchmark"),
            benchmark_file=str(data.get("benchmark_file", "")),
            profile=text(data, "profile"),
            algorithms=algorithms,
            instances=[instance(value, "instances") for value in items("instances")],
            cells=cells,
            problems=[str(problem) for problem in problems],
            planned_at=str(data.get("planned_at", "")),
            host=str(data.get("host", "")),
            marlbench_version=str(data.get("marlbench_version", "")),
        )


def _dumps(data: Mapping[str, Any]) -> str:
    """JSON with one line per field, and one line per entry of a list (a cell, an algorithm)."""
    fields = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            entries = ",\n".join(f"  {json.dumps(entry, ensure_ascii=False)}" for entry in value)
            fields.append(f" {json.dumps(key)}: [\n{entries}\n ]")
        else:
            fields.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def write_plan(path: Path, plan: PlanFile) -> None:
    """Write the plan atomically (readers never see half a file)."""
    from marlbench.data.store import write_text_atomic

    write_text_atomic(path, _dumps(plan.to_dict()))


def read_plan(path: Path) -> PlanFile:
    """The plan at ``path``; ``ConfigError`` when it cannot be read or is not a plan file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the grid plan: {error}") from error
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path}: expected a JSON grid plan, found invalid JSON ({error.msg} at line {error.lineno})"
        ) from None
    return PlanFile.from_dict(data, path)

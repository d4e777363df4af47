"""The report header sums up the runs' provenance (commits, hosts, uncommitted changes) where the
result files record it, and every report file is written atomically."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from test_report import EXPERT, MEDIUM, make_benchmark, write_run, write_two_by_two

from marlbench.report.build import build_report

COMMIT_A = "0123456789abcdef0123456789abcdef01234567"
COMMIT_B = "fedcba9876543210fedcba9876543210fedcba98"


def _provenance(commit: str, host: str, dirty: bool) -> dict:
    return {
        "marlbench_version": "0.1.0",
        "commit": commit,
        "dirty": dirty,
        "python": "3.11.9",
        "torch": "2.13.0",
        "numpy": "2.3.0",
        "host": host,
        "cpu": "a CPU",
        "gpu": None,
        "threads": 1,
    }


def _header(tmp_path: Path, results: Path) -> list[str]:
    build_report(make_benchmark(seeds=(0, 1)), results, tmp_path / "reports", ("md",), figures=False)
    return (tmp_path / "reports" / "tiny.md").read_text().split("## ")[0].splitlines()


def test_the_header_sums_up_commits_hosts_and_dirty_runs(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, MEDIUM, "bc", seed, 1.0, provenance=_provenance(COMMIT_A, "node-a", dirty=False))
        write_run(results, MEDIUM, "comadice", seed, 2.0, provenance=_provenance(COMMIT_A, "node-b", dirty=seed == 1))
        write_run(results, EXPERT, "bc", seed, 1.0, provenance=_provenance(COMMIT_B, "node-a", dirty=False))
    write_run(results, EXPERT, "comadice", 0, 2.0)  # written before results recorded provenance
    write_run(results, EXPERT, "comadice", 1, 2.0, provenance=_provenance(COMMIT_A, "", dirty=None))
    not_in_the_table = _provenance(COMMIT_B, "node-c", dirty=True)
    write_run(results, EXPERT, "comadice", 2, 2.0, provenance=not_in_the_table)  # seed 2 is not the benchmark's
    assert (
        "Provenance of the 8 runs in the tables: commits 0123456789ab (5 runs), fedcba987654 (2 runs); hosts node-a "
        "(4 runs), node-b (2 runs); CPUs a CPU (7 runs); 1 run with uncommitted changes (1 without the flag); "
        "1 without provenance."
    ) in _header(tmp_path, results)
    assert any(
        line.startswith("Report made ") and line.endswith(" UTC on " + socket.gethostname() + ".")
        for line in _header(tmp_path, results)
    )


def test_no_provenance_line_without_provenance(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    write_run(results, MEDIUM, "bc", 5, 1.0, provenance="not an object")  # type: ignore[arg-type]
    header = _header(tmp_path, results)
    assert header[:3] == ["# Tiny table", "", "Benchmark file tiny.yaml; mirrors ComaDICE Table 3."]
    assert not any(line.startswith("Provenance") for line in header)


def test_report_files_are_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    reports = tmp_path / "reports"
    written = build_report(make_benchmark(), results, reports, csv=True)
    before = {path: path.read_bytes() for path in written}
    assert {path.suffix for path in before} == {".md", ".tex", ".csv", ".json", ".png"}
    write_run(results, MEDIUM, "bc", 3, 100.0)

    def fail(source, target):
        raise OSError(f"disk full while replacing {target}")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        build_report(make_benchmark(seeds=(0, 1, 2, 3)), results, reports, csv=True)
    monkeypatch.undo()
    assert {path: path.read_bytes() for path in written} == before
    assert sorted(path.name for path in reports.iterdir()) == sorted(path.name for path in written)

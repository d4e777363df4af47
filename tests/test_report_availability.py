"""A report shows every result that exists: cells with finished runs show them whatever the
reporting machine holds (no data root, no simulator), and a status (not implemented, n/a,
not run) stands only in a cell without a run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from test_report import EXPERT, MEDIUM, make_benchmark, table_for, write_run

from marlbench.grid import report_cell_status
from marlbench.report.build import build_report, write_report
from marlbench.report.tables import render_markdown

SMAC = ("smacv1", "5m_vs_6m", "good")
XOR = ("matrix", "xor", "ab")


def _cluster_results(results: Path) -> None:
    """What a cluster leaves: every cell of 3 instances x 2 algorithms, 2 seeds, no dataset anywhere."""
    for instance in (MEDIUM, EXPERT, SMAC):
        for seed in range(2):
            write_run(results, instance, "bc", seed, 10.0 + seed)
            write_run(results, instance, "comadice", seed, 20.0 + seed)


def _rows(report: Path) -> list[str]:
    return [line for line in report.read_text().splitlines() if line.startswith("| ") and "±" in line]


def test_results_without_a_data_root_report_every_number(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _cluster_results(results)
    benchmark = make_benchmark(instances=(MEDIUM, EXPERT, SMAC), seeds=(0, 1))
    assert not (tmp_path / "data").exists() and not (tmp_path / "no-data").exists()
    write_report(benchmark, results, tmp_path / "reports", formats=("md",), figures=False)
    text = (tmp_path / "reports" / "tiny.md").read_text()
    rows = _rows(tmp_path / "reports" / "tiny.md")
    assert len(rows) == 3 and all(row.count("±") == 2 for row in rows), rows
    assert "| 10.50 ± 0.50" in rows[0] and "20.50 ± 0.50" in rows[0]
    assert "not run" not in text.split("not run: the reason is under the table")[1]


def test_one_missing_cell_is_the_only_one_named(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _cluster_results(results)
    shutil.rmtree(results / "mamujoco" / "hopper" / "expert" / "comadice")
    benchmark = make_benchmark(instances=(MEDIUM, EXPERT, SMAC), seeds=(0, 1))
    write_report(benchmark, results, tmp_path / "reports", formats=("md",), figures=False)
    text = (tmp_path / "reports" / "tiny.md").read_text()
    table = text.split("## ")[1]
    body = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert body[1] == "|  | expert | **10.50 ± 0.50** | — |"
    assert "".join(body).count("—") == 1 and "".join(body).count("±") == 5
    assert "not run" not in table


def test_a_status_stands_only_where_no_run_finished(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, MEDIUM, "bc", seed, 1.0 + seed)
        write_run(results, MEDIUM, "omsd", seed, 3.0)
    write_run(results, EXPERT, "omsd", 0, 0.0, status="diverged")
    benchmark = make_benchmark(algorithms=("bc", "omsd", "inspo"), seeds=(0, 1))
    status = {
        ("omsd", MEDIUM): "not run: no dataset for mamujoco/hopper/medium",
        ("omsd", EXPERT): "not run: no dataset for mamujoco/hopper/expert",
        ("bc", EXPERT): "not run: suite missing",
        ("inspo", MEDIUM): "n/a",
        ("inspo", EXPERT): "not implemented",
    }
    lines = render_markdown(table_for(results, benchmark, status)).splitlines()
    assert lines[2:] == [
        "| hopper | medium | 1.50 ± 0.50* | **3.00 ± 0.00** | n/a |",
        "|  | expert | not run | diverged (1) | not implemented |",
        "",
        "- not run: suite missing (bc on mamujoco/hopper/expert)",
    ]


def test_report_cell_status_needs_neither_datasets_nor_environments(tmp_path: Path) -> None:
    benchmark = make_benchmark(instances=(XOR, EXPERT, SMAC), algorithms=("bc", "omsd", "not_yet_written"))
    status = report_cell_status(benchmark)
    assert status == {
        ("omsd", XOR): "n/a",
        **{("not_yet_written", instance): "not implemented" for instance in (XOR, EXPERT, SMAC)},
    }
    write_run(tmp_path / "results", XOR, "bc", 0, 1.0)
    write_run(tmp_path / "results", XOR, "omsd", 0, 0.5)  # a result wins over "n/a"
    benchmark = make_benchmark(instances=(XOR,), algorithms=("bc", "omsd", "not_yet_written"), seeds=(0,))
    build_report(benchmark, tmp_path / "results", tmp_path / "reports", ("md",), cell_status=status, figures=False)
    assert (
        "| xor | ab | **1.00 ± 0.00** | 0.50 ± 0.00† | not implemented |"
        in (tmp_path / "reports" / "tiny.md").read_text().splitlines()
    )


def test_write_report_imports_no_simulator(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _cluster_results(results)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from marlbench.benchmark import Benchmark\n"
        "from marlbench.report.build import write_report\n"
        "benchmark = Benchmark.load(sys.argv[1])\n"
        "write_report(benchmark, Path(sys.argv[2]), Path(sys.argv[3]), formats=('md',))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('mujoco', 'gymnasium', 'gymnasium_robotics'))\n"
        "assert not heavy, heavy\n"
    )
    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(
        "name: tiny\nprofile: smoke\nmetric: return_mean\nalgorithms: [bc, comadice]\nseeds: [0, 1]\n"
        "instances: [mamujoco/hopper/medium, mamujoco/hopper/expert, smacv1/5m_vs_6m/good]\n"
    )
    reports = tmp_path / "reports"
    completed = subprocess.run(
        [sys.executable, "-c", code, str(yaml_path), str(results), str(reports)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert len(_rows(reports / "tiny.md")) == 3

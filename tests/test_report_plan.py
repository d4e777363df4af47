"""The report and the grid plan beside the results: with a plan, the report takes the algorithms of
``algorithms: all``, their headings and order and the status of cells without a run from it; without
one (or with one it cannot use), from what the runs record, and it says so. Results always win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import EXPERT, MEDIUM, make_benchmark, write_run

from marlbench.errors import ConfigError
from marlbench.plan import (
    MISSING,
    NOT_APPLICABLE,
    NOT_AVAILABLE,
    NOT_IMPLEMENTED,
    RUN,
    AlgorithmEntry,
    CellPlan,
    PlanFile,
    plan_path,
    read_plan,
    write_plan,
)
from marlbench.report.build import build_report, write_report

SMAC = ("smacv1", "5m_vs_6m", "good")


def _record_display(run_dir: Path, display_name: str, column_order: int) -> None:
    """What training writes into config.json (and result.json's config) since it records headings."""
    display = {"display_name": display_name, "column_order": column_order}
    for name in ("config.json", "result.json"):
        data = json.loads((run_dir / name).read_text())
        (data if name == "config.json" else data["config"])["display"] = display
        (run_dir / name).write_text(json.dumps(data))


def _plan(instances, cells, algorithms=None) -> PlanFile:
    algorithms = algorithms or [
        AlgorithmEntry("bc", "BC", 0),
        AlgorithmEntry("omsd", "OMSD", 9),
        AlgorithmEntry("comadice", "ComaDICE", 10),
    ]
    return PlanFile(
        benchmark="tiny",
        benchmark_file="tiny.yaml",
        profile="smoke",
        algorithms=algorithms,
        instances=list(instances),
        cells=cells,
        planned_at="2025-01-31T12:00:00+00:00",
        host="planner",
    )


def _table(report: Path) -> list[str]:
    return [line for line in report.read_text().split("## ")[1].splitlines() if line.startswith(("| ", "- "))]


def test_a_plan_round_trips_and_a_wrong_field_is_named(tmp_path: Path) -> None:
    plan = _plan(
        [MEDIUM, EXPERT],
        [
            CellPlan("bc", MEDIUM, RUN),
            CellPlan("omsd", MEDIUM, NOT_APPLICABLE, "omsd supports continuous actions"),
            CellPlan("comadice", MEDIUM, NOT_IMPLEMENTED, "no algorithm 'comadice' is registered"),
            CellPlan("bc", EXPERT, NOT_AVAILABLE, "suite mamujoco cannot run here: no MuJoCo"),
            CellPlan("omsd", EXPERT, MISSING, "no dataset for mamujoco/hopper/expert"),
        ],
    )
    path = plan_path(tmp_path / "results" / "smoke", "tiny")
    write_plan(path, plan)
    assert path == tmp_path / "results" / "smoke" / "tiny.plan.json"
    assert read_plan(path) == plan
    assert read_plan(path).cell_status() == {
        ("omsd", MEDIUM): "n/a",
        ("comadice", MEDIUM): "not implemented",
        ("bc", EXPERT): "not run: suite mamujoco cannot run here: no MuJoCo",
        ("omsd", EXPERT): "not run: no dataset for mamujoco/hopper/expert",
    }
    data = json.loads(path.read_text())
    data["cells"][0]["status"] = "skipped"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ConfigError, match=r"tiny\.plan\.json: field 'cells\.status': expected one of run, n/a, .*'skipped'"
    ):
        read_plan(path)


def test_with_a_plan_the_report_takes_columns_headings_and_statuses_from_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, MEDIUM, "bc", seed, 1.0 + seed)
        write_run(results, MEDIUM, "omsd", seed, 3.0)  # a result wins over the plan's "n/a"
    plan = _plan(
        [MEDIUM, EXPERT],
        [
            CellPlan("bc", MEDIUM, RUN),
            CellPlan("omsd", MEDIUM, NOT_APPLICABLE, "omsd supports continuous actions"),
            CellPlan("comadice", MEDIUM, NOT_IMPLEMENTED),
            CellPlan("bc", EXPERT, MISSING, "no dataset for mamujoco/hopper/expert"),
            CellPlan("omsd", EXPERT, NOT_APPLICABLE),
            CellPlan("comadice", EXPERT, NOT_IMPLEMENTED),
        ],
    )
    write_plan(plan_path(results, "tiny"), plan)
    benchmark = make_benchmark(algorithms=None, seeds=(0, 1))  # algorithms: all
    write_report(benchmark, results, tmp_path / "reports", formats=("md",), figures=False)
    report = tmp_path / "reports" / "tiny.md"
    assert _table(report) == [
        "| task | dataset | BC | OMSD | ComaDICE |",
        "| hopper | medium | 1.50 ± 0.50* | **3.00 ± 0.00** | not implemented |",
        "|  | expert | not run | n/a | not implemented |",
        "- not run: no dataset for mamujoco/hopper/expert (bc on mamujoco/hopper/expert)",
    ]
    text = report.read_text()
    assert "from the grid plan made 2025-01-31T12:00:00+00:00 on planner (tiny.plan.json)" in text
    assert "No grid plan" not in text


def test_without_a_plan_headings_and_order_come_from_the_runs_and_the_report_says_so(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        _record_display(write_run(results, MEDIUM, "comadice", seed, 2.0), "ComaDICE", 10)
        _record_display(write_run(results, MEDIUM, "optdice", seed, 1.0), "OptDICE", 6)
        write_run(results, MEDIUM, "bc", seed, 0.5)  # written before runs recorded headings: its name, last
    write_run(results, SMAC, "icq", 0, 9.0)  # another benchmark's instance: not a column of this one
    benchmark = make_benchmark(instances=(MEDIUM,), algorithms=None, seeds=(0, 1))
    write_report(benchmark, results, tmp_path / "reports", formats=("md",), figures=False)
    report = tmp_path / "reports" / "tiny.md"
    assert _table(report)[0] == "| task | dataset | OptDICE | ComaDICE | bc |"
    text = report.read_text()
    assert "No grid plan beside these results: there is none" in text
    assert "The grid has not been planned on this machine" in text

    (results / "tiny.plan.json").write_text("{not json")
    write_report(benchmark, results, tmp_path / "reports", formats=("md",), figures=False)
    text = report.read_text()
    assert "No grid plan beside these results: it cannot be used (" in text and "invalid JSON" in text
    assert _table(report)[0] == "| task | dataset | OptDICE | ComaDICE | bc |"


def test_a_plan_for_another_version_of_the_file_is_used_where_it_applies_and_named(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results, EXPERT, "bc", 0, 1.0)
    write_plan(plan_path(results, "tiny"), _plan([MEDIUM], [CellPlan("omsd", MEDIUM, NOT_APPLICABLE)]))
    benchmark = make_benchmark(instances=(MEDIUM, EXPERT), algorithms=("bc", "omsd"), seeds=(0,))
    write_report(benchmark, results, tmp_path / "reports", formats=("md",), figures=False)
    report = tmp_path / "reports" / "tiny.md"
    assert _table(report)[:3] == [
        "| task | dataset | BC | OMSD |",
        "| hopper | medium | — | n/a |",
        "|  | expert | **1.00 ± 0.00** | — |",
    ]
    assert "does not cover mamujoco/hopper/expert" in report.read_text()


def test_paper_names_in_captions_come_from_the_published_folder(tmp_path: Path) -> None:
    from test_report_annotations import AA_AB_BA, _matrix_runs

    from marlbench.report.published import load_published, published_for

    results = tmp_path / "results"
    _matrix_runs(results, instances=(AA_AB_BA,))
    benchmark = make_benchmark(instances=(AA_AB_BA,), seeds=(0, 1), metric="expected_return")
    published = published_for(load_published(), paper="inspo", tables=[1], metric="expected_return")
    build_report(benchmark, results, tmp_path / "shipped", ("md",), published=published, figures=False)
    assert "### Published: InSPO Table 1, p. 6" in (tmp_path / "shipped" / "tiny.md").read_text()
    build_report(
        benchmark, results, tmp_path / "renamed", ("md",), published=published, figures=False,
        paper_names={"inspo": "In-Sample Sequential Policy Optimisation"},
    )  # fmt: skip
    assert (
        "### Published: In-Sample Sequential Policy Optimisation Table 1"
        in (tmp_path / "renamed" / "tiny.md").read_text()
    )

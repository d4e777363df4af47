"""Unreadable result files do not stop a report: each is skipped and named under the tables with
the field, what was expected and what was found; a completed run without the table's metric is
named too, never dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import EXPERT, MEDIUM, make_benchmark, write_run, write_two_by_two

from marlbench.report.build import build_report
from marlbench.report.results import load_curves, load_results, read_results


def _edit_result(run_dir: Path, **changes) -> Path:
    path = run_dir / "result.json"
    result = json.loads(path.read_text())
    result.update(changes)
    path.write_text(json.dumps(result))
    return path


def _report(tmp_path: Path, results: Path) -> str:
    build_report(make_benchmark(), results, tmp_path / "reports", formats=("md", "tex"), figures=False)
    return (tmp_path / "reports" / "tiny.md").read_text()


def test_truncated_json_is_skipped_named_and_the_report_goes_on(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    path = results / "mamujoco/hopper/medium/bc/default/seed2/result.json"
    path.write_text(path.read_text()[:40])
    text = _report(tmp_path, results)
    assert "| hopper | medium | 1.50 ± 0.50 (n=2) | **4.00 ± 0.82** |" in text
    assert f"- Skipped, unreadable: {path}: expected a JSON object, found invalid JSON (" in text
    assert (tmp_path / "reports" / "tiny.tex").read_text().count("Skipped, unreadable") == 1


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"final": [1.0, 2.0]}, "field 'final': expected an object or null, found a list"),
        ({"seed": "2"}, "field 'seed': expected an integer, found a string"),
        ({"status": "running"}, "field 'status': expected completed or diverged, found a string"),
        ({"final": {"return_mean": "high"}}, "field 'final.return_mean': expected a number or null, found a string"),
        ({"algo": None}, "field 'algo': expected a string, found null"),
    ],
)
def test_a_malformed_field_names_file_field_expected_and_found(tmp_path: Path, changes: dict, message: str) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    path = _edit_result(results / "mamujoco/hopper/expert/comadice/default/seed0", **changes)
    text = _report(tmp_path, results)
    assert f"- Skipped, unreadable: {path}: {message}." in text
    assert "|  | expert | **5.00 ± 0.82** | 2.50 ± 0.50 (n=2) |" in text


def test_a_list_instead_of_an_object_and_files_of_other_benchmarks(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    other = write_run(results, ("mamujoco", "ant", "expert"), "bc", 0, 1.0) / "result.json"
    other.write_text("[]")
    stray = results / "notes" / "result.json"
    stray.parent.mkdir()
    stray.write_text("[]")
    frame, skipped = read_results(results)
    assert len(frame) == 12
    assert [(item.path, item.reason) for item in skipped] == [
        (other, "expected a JSON object, found a list"),
        (stray, "expected a JSON object, found a list"),
    ]
    text = _report(tmp_path, results)
    assert f"- Skipped, unreadable: {stray}: expected a JSON object, found a list." in text
    assert str(other) not in text  # a run of another benchmark's dataset does not concern this report


def test_a_completed_run_without_the_metric_is_named(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    no_final = results / "mamujoco/hopper/medium/comadice/default/seed1"
    no_return = results / "mamujoco/hopper/medium/comadice/default/seed2"
    _edit_result(no_final, final=None)
    _edit_result(no_return, final={"return_std": 0.0, "episodes": 4})
    text = _report(tmp_path, results)
    assert "| hopper | medium | 2.00 ± 0.82† | **3.00 ± 0.00** (n=1) |" in text
    assert f"- Completed runs without the return, left out of their cells: {no_final}, {no_return}." in text


def test_an_unreadable_config_skips_only_the_curves(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    config = results / "mamujoco/hopper/expert/bc/default/seed1/config.json"
    config.write_text('{"algo": "bc", ')
    text = _report(tmp_path, results)
    assert f"- Skipped, unreadable: {config}: expected a JSON object, found invalid JSON (" in text
    assert "|  | expert | **5.00 ± 0.82** | 2.00 ± 0.82 |" in text
    with pytest.warns(UserWarning, match="skipped .*config.json: expected a JSON object"):
        curves = load_curves(results)
    assert len(curves) == 2 * 11  # two evaluations of each readable run


def test_load_results_warns_with_the_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results, MEDIUM, "bc", 0, 1.0)
    write_run(results, EXPERT, "bc", 0, 1.0).joinpath("result.json").write_text("")
    with pytest.warns(UserWarning, match=r"skipped .*expert.*result\.json: expected a JSON object, found invalid JSON"):
        frame = load_results(results)
    assert frame["quality"].tolist() == ["medium"]

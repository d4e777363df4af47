"""The benchmark grid: planning what can run here, and a real Ray Tune grid that is
interrupted after its first finished trial and resumed without rerunning it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marlbench.algorithm import all_algorithms
from marlbench.benchmark import Benchmark
from marlbench.errors import MarlbenchError
from marlbench.grid import GridOptions, generate_missing, plan_grid, run_grid
from marlbench.plan import plan_path, read_plan
from marlbench.suites import get_suite
from marlbench.workspace import Workspace

pytest.importorskip("ray.tune")

MARLBENCH = [sys.executable, "-m", "marlbench.cli"]


def _benchmark(tmp_path: Path, algorithms: list[str] | str, instances: list[str], **extra: str) -> Benchmark:
    lines = [
        "name: tiny",
        "profile: smoke",
        "metric: expected_return",
        f"algorithms: {algorithms if isinstance(algorithms, str) else '[' + ', '.join(algorithms) + ']'}",
        "seeds: [0, 1]",
        "instances:",
        *[f"  - {instance}" for instance in instances],
        *[f"{key}: {value}" for key, value in extra.items()],
    ]
    path = tmp_path / "tiny.yaml"
    path.write_text("\n".join(lines) + "\n")
    return Benchmark.load(path)


def test_plan_says_what_is_missing_and_how_to_get_it(tmp_path):
    benchmark = _benchmark(
        tmp_path,
        ["bc", "not_yet_written"],
        ["matrix/xor/ab", "smacv1/5m_vs_6m/poor", "mamujoco/hopper/expert"],
    )
    plan = plan_grid(benchmark, tmp_path / "data")
    assert [(t.algo, t.instance) for t in plan.cells] == [("bc", ("matrix", "xor", "ab"))]
    assert plan.n_trials == 2
    assert plan.to_generate == [("matrix", "xor", "ab")]  # matrix datasets take seconds: always generated
    status = plan.cell_status
    assert status[("not_yet_written", ("matrix", "xor", "ab"))] == "not implemented"
    assert status[("bc", ("smacv1", "5m_vs_6m", "poor"))].startswith("not run: suite smacv1 is not available")
    assert status[("bc", ("mamujoco", "hopper", "expert"))] == "not run: no dataset for mamujoco/hopper/expert"
    text = "\n".join(plan.problems)
    assert "not implemented in this installation (reported as such): not_yet_written" in text
    assert "`marlbench data download --suite mamujoco --task hopper --quality expert`" in text
    assert "`marlbench data generate --suite mamujoco --task hopper --quality expert`" in text

    generating = plan_grid(benchmark, tmp_path / "data", generate_missing=True)
    assert generating.to_generate == [("matrix", "xor", "ab"), ("mamujoco", "hopper", "expert")]
    assert ("bc", ("mamujoco", "hopper", "expert")) in {(t.algo, t.instance) for t in generating.cells}


def test_a_grid_where_nothing_can_run_fails_before_starting_ray(tmp_path, capsys):
    benchmark = _benchmark(tmp_path, ["bc"], ["smacv1/5m_vs_6m/poor"])
    with pytest.raises(MarlbenchError, match="nothing can run here"):
        run_grid(benchmark, GridOptions(Workspace(tmp_path / "data", tmp_path / "results")))
    assert "grid: suite smacv1 is not available" in capsys.readouterr().out
    plan = read_plan(plan_path(tmp_path / "results" / "smoke", "tiny"))  # written first, for the report
    assert [(cell.algo, cell.status) for cell in plan.cells] == [("bc", "not available")]
    assert plan.cell_status()[("bc", ("smacv1", "5m_vs_6m", "poor"))].startswith(
        "not run: suite smacv1 is not available"
    )


def test_all_plans_every_registered_algorithm_in_column_order_and_the_plan_file_records_why_not(tmp_path, capsys):
    """``algorithms: all`` is every registered algorithm, by column order then name; ``--plan-only``
    writes the plan beside the results (statuses, headings, order) and runs nothing."""
    benchmark = _benchmark(tmp_path, "all", ["matrix/xor/ab", "matrix/bandit/gmm", "mamujoco/hopper/expert"])
    workspace = Workspace(tmp_path / "data", tmp_path / "results")
    summary = run_grid(benchmark, GridOptions(workspace, plan_only=True))
    assert summary.finished == 0 and not (tmp_path / "data").exists(), "nothing generated, nothing run"
    assert "none run (--plan-only)" in capsys.readouterr().out
    registered = all_algorithms()
    expected = sorted(registered, key=lambda name: (registered[name].column_order, name))
    plan = read_plan(plan_path(tmp_path / "results" / "smoke", "tiny"))
    assert [entry.name for entry in plan.algorithms] == expected
    assert {entry.name: entry.display_name for entry in plan.algorithms} == {
        name: cls.display_name for name, cls in registered.items()
    }
    assert plan.instances == list(benchmark.instances)
    by_cell = {(cell.algo, "/".join(cell.instance)): cell for cell in plan.cells}
    assert len(by_cell) == len(expected) * 3
    for name, cls in registered.items():
        for task, instance in (("xor", "matrix/xor/ab"), ("bandit", "matrix/bandit/gmm")):
            supported = get_suite("matrix").task(task).spec.action_type in cls.action_types
            assert by_cell[(name, instance)].status == ("run" if supported else "n/a")
    omsd = by_cell[("omsd", "matrix/xor/ab")]
    assert omsd.status == "n/a" and "omsd supports continuous actions" in omsd.reason
    hopper = by_cell[("bc", "mamujoco/hopper/expert")]
    assert hopper.status in ("missing", "not available"), hopper  # no dataset, or no MuJoCo here


def _completed_runs(results: Path) -> dict[Path, tuple[int, str]]:
    """Run directories with a completed result: result.json's mtime and metrics.jsonl's text."""
    runs = {}
    for path in results.rglob("result.json"):
        if json.loads(path.read_text()).get("status") == "completed":
            runs[path.parent] = (path.stat().st_mtime_ns, (path.parent / "metrics.jsonl").read_text())
    return runs


def test_interrupted_grid_resumes_without_rerunning_finished_trials(tmp_path):
    """2 algorithms x 2 matrix datasets x 2 seeds, at most 2 at once, on a real local Ray.

    The first ``marlbench grid`` gets SIGINT (Ctrl-C) once a trial has finished; the
    second restores the Tune experiment and finishes the rest. Finished run directories
    must be untouched and every metrics line must appear once.
    """
    yaml_path = _benchmark(tmp_path, ["bc", "comadice"], ["matrix/xor/ab", "matrix/mne/biased"]).path
    results = tmp_path / "results"
    command = [*MARLBENCH, "grid", str(yaml_path), "--results", str(results), "--max-concurrent", "2"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not _completed_runs(results) and first.poll() is None:
        assert time.monotonic() < deadline, "no trial finished within 300 s"
        time.sleep(0.5)
    first.send_signal(signal.SIGINT)
    first_output = first.communicate(timeout=180)[0]
    finished_early = _completed_runs(results)
    assert finished_early, first_output

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    if len(finished_early) < 8:
        assert "restoring the interrupted grid" in second.stdout
    assert "8 of 8 trials have a completed run, 0 failed" in second.stdout
    finished = _completed_runs(results / "smoke")
    assert len(finished) == 8
    for run_dir, before in finished_early.items():
        assert finished[run_dir] == before, f"{run_dir} was run again"
    for run_dir, (_, metrics) in finished.items():
        steps = [(record["kind"], record["step"]) for record in map(json.loads, metrics.splitlines())]
        assert len(steps) == len(set(steps)), f"duplicated metric lines in {run_dir}"
        runtime = json.loads((run_dir / "config.json").read_text())["runtime"]
        assert runtime["threads"] == 1, "one torch thread per trial by default (--cpus-per-trial 1)"
        assert runtime["dataset_path"] == str((tmp_path / "data").resolve().joinpath(*run_dir.parts[-6:-3]))
    assert not list(results.rglob("ray_results")), "Ray's experiment directory must stay out of the results"

    reports = tmp_path / "reports"
    report = subprocess.run(
        [*MARLBENCH, "report", str(yaml_path), "--results", str(results), "--out", str(reports), "--no-figures"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    text = (reports / "tiny.md").read_text()
    lines = text.splitlines()
    assert "| task | dataset | BC | ComaDICE |" in lines, "headings from the plan the grid wrote"
    rows = [line for line in lines if line.startswith(("| xor | ab |", "| mne | biased |"))]
    assert len(rows) == 2 and all(row.count("±") == 2 for row in rows), rows
    assert "(n=" not in "".join(rows), "every cell must hold both seeds"
    assert "from the grid plan made" in text and "No grid plan" not in text, "the grid wrote its plan"
    assert (reports / "tiny.tex").read_text().count("\\pm") >= 4


def test_generation_of_several_tasks_runs_in_worker_processes_and_reports_each_failure(tmp_path: Path):
    """Two MaMuJoCo tasks are generated by two subprocesses; a budget below the minimum fails in
    each, and the error names both tasks (nothing is written)."""
    missing = [("mamujoco", "hopper", "expert"), ("mamujoco", "halfcheetah", "expert")]
    said: list[str] = []
    options = GridOptions(Workspace(tmp_path / "data", tmp_path / "results"), generate_budget=10, generate_episodes=1)
    with pytest.raises(MarlbenchError, match=r"mamujoco/hopper .*mamujoco/halfcheetah"):
        generate_missing(missing, options, say=said.append)
    assert said == [f"grid: generating mamujoco/{task}/expert -> {tmp_path / 'data' / 'mamujoco' / task / 'expert'}"
                    for task in ("hopper", "halfcheetah")]  # fmt: skip
    assert not (tmp_path / "data" / "mamujoco" / "hopper" / "expert").exists()


def test_cluster_path_check_passes_on_a_local_cluster_and_says_what_to_do_when_a_node_cannot_see_the_paths(
    tmp_path, monkeypatch, capsys
):
    """A local Ray is a cluster of one: the check passes. A node that cannot read a dataset, a
    results directory the nodes do not share (the driver's probe file lands on its own disk
    only) and a results root that cannot be created all stop the grid before its first trial."""
    import ray

    from marlbench.errors import RunDirectoryError
    from marlbench.grid import check_cluster_paths

    dataset = tmp_path / "data" / "matrix" / "xor" / "ab"
    get_suite("matrix").generate("xor", "ab", dataset)
    results = tmp_path / "results"
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        check_cluster_paths(results, [dataset])
        assert not list(results.iterdir()), "the probe files are removed"

        with pytest.raises(
            RunDirectoryError, match=r"(?s)node .*: cannot read the dataset .*missing.*--results and --data"
        ):
            check_cluster_paths(results, [dataset, tmp_path / "missing"])

        write_text = Path.write_text

        def drivers_own_disk(path: Path, *args, **kwargs):
            return None if path.name.startswith(".marlbench-probe-") else write_text(path, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(Path, "write_text", drivers_own_disk)
            with pytest.raises(RunDirectoryError) as refused:
                check_cluster_paths(results, [dataset])
        message = str(refused.value)
        assert f"{results}: expected every node of the Ray cluster to write here" in message
        assert f"{results} does not hold the driver's probe file (No such file or directory)" in message
        assert "file system every node mounts at the same path" in message

        (tmp_path / "a-file").write_text("")
        benchmark = _benchmark(tmp_path, ["bc"], ["matrix/xor/ab"])
        options = GridOptions(Workspace(tmp_path / "data", tmp_path / "a-file" / "results"), address="local")
        with pytest.raises(RunDirectoryError, match=r"a-file/results/smoke: expected a writable directory"):
            run_grid(benchmark, options)
        assert "grid: 2 trials" not in capsys.readouterr().out, "no trial may start"
    finally:
        ray.shutdown()

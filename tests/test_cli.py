"""The `marlbench` command: the issue's user commands, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from marlbench.cli import main
from marlbench.errors import MissingDependencyError, require


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_console_script_is_installed():
    executable = Path(sys.executable).parent / "marlbench"
    assert executable.is_file(), f"the console script is not installed beside {sys.executable}"
    completed = subprocess.run([executable, "--help"], capture_output=True, text=True, check=True)
    assert "algos" in completed.stdout and "data" in completed.stdout


def test_algos_lists_bc_with_action_spaces_and_fields(capsys):
    code, out, _ = run_cli(capsys, "algos")
    assert code == 0
    assert "bc" in out and "discrete, continuous" in out and "learning_rate = 0.001" in out


def test_suites_lists_tasks_qualities_and_availability(capsys):
    code, out, _ = run_cli(capsys, "suites")
    assert code == 0
    assert "matrix" in out and "runs here: yes" in out
    assert "ab, ab-ba, aa-ab-ba, aa-ab-ba-bb" in out and "uniform, biased" in out and "optimal, mixed" in out


def test_generate_info_verify_and_run(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "generate", "--suite", "matrix", "--task", "xor", "--quality", "ab-ba")
    assert code == 0 and "AB" in out
    root = tmp_path / "data" / "matrix" / "xor" / "ab-ba"
    code, out, _ = run_cli(capsys, "data", "info", str(root))
    assert code == 0 and "episodes" in out and "2000" in out
    code, out, _ = run_cli(capsys, "data", "info", str(root), "--json")
    assert json.loads(out)["joint_action_histogram"] == {"AA": 0, "AB": 1000, "BA": 1000, "BB": 0}
    code, out, _ = run_cli(capsys, "data", "verify", str(root))
    assert code == 0 and out.startswith("OK")
    code, _, err = run_cli(capsys, "data", "generate", "--suite", "matrix", "--task", "xor", "--quality", "ab-ba")
    assert code == 2 and "--overwrite" in err
    args = ["run", "--algo", "bc", "--suite", "matrix", "--task", "xor", "--quality", "ab-ba", "--profile", "smoke"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert "run directory: results/matrix/xor/ab-ba/bc/default/seed0" in out
    assert "final return:" in out and "expected return" in out


def test_run_generates_a_missing_matrix_dataset(capsys, tmp_path):
    args = ["run", "--algo", "bc", "--suite", "matrix", "--task", "mne", "--quality", "biased", "--profile", "smoke"]
    code, _, _ = run_cli(capsys, *args)
    assert code == 0
    assert (tmp_path / "data" / "matrix" / "mne" / "biased" / "meta.json").is_file()


def test_verify_reports_a_corrupt_dataset(capsys, tmp_path):
    run_cli(capsys, "data", "generate", "--suite", "matrix", "--task", "xor", "--quality", "ab")
    reward = tmp_path / "data" / "matrix" / "xor" / "ab" / "reward.npy"
    reward.write_bytes(reward.read_bytes()[:-8])
    code, _, err = run_cli(capsys, "data", "verify", "--suite", "matrix", "--task", "xor", "--quality", "ab")
    assert code == 1
    assert "reward.npy" in err and "field 'reward'" in err


NAMES = {"algo": "bc", "suite": "matrix", "task": "xor", "quality": "ab"}


@pytest.mark.parametrize(
    ("field", "wrong", "expected"),
    [
        ("algo", "bcc", "unknown algorithm 'bcc'; did you mean 'bc'"),
        ("suite", "matrx", "unknown suite 'matrx'; did you mean 'matrix'"),
        ("task", "xro", "did you mean 'xor'"),
        ("quality", "ab-b", "did you mean 'ab-ba'"),
    ],
)
def test_unknown_names_exit_2_with_the_closest_names(capsys, field, wrong, expected):
    names = {**NAMES, field: wrong}
    args = [item for key, value in names.items() for item in (f"--{key}", value)]
    code, _, err = run_cli(capsys, "run", *args, "--profile", "smoke")
    assert code == 2
    assert expected in err


def test_unknown_config_field_exits_2_with_the_closest_name(capsys):
    args = [item for key, value in NAMES.items() for item in (f"--{key}", value)]
    code, _, err = run_cli(capsys, "run", *args, "--set", "lr=1", "--profile", "smoke")
    assert code == 2
    assert "did you mean 'learning_rate'" in err


def test_missing_optional_dependency_names_the_pip_command():
    with pytest.raises(MissingDependencyError) as error:
        require("marlbench_surely_missing_module", "mamujoco", "Multi-Agent MuJoCo")
    assert "pip install 'marlbench[mamujoco]'" in str(error.value)
    assert error.value.exit_code == 3


# --- the workspace: data and results roots, resolved once at the entry point ---------------------


def test_workspace_takes_the_flag_then_the_environment_then_the_default(tmp_path):
    from marlbench.workspace import Workspace

    environ = {"MARLBENCH_DATA": "/env/data", "MARLBENCH_RESULTS": "/env/results"}
    assert Workspace.resolve("flag-data", "flag-results", environ) == Workspace(Path("flag-data"), Path("flag-results"))
    assert Workspace.resolve(environ=environ) == Workspace(Path("/env/data"), Path("/env/results"))
    assert Workspace.resolve(environ={"MARLBENCH_DATA": ""}) == Workspace(Path("data"), Path("results"))
    workspace = Workspace(Path("d"), Path("r"))
    assert workspace.dataset_root("matrix", "xor", "ab") == Path("d/matrix/xor/ab")
    assert workspace.profile_results("smoke") == Path("r/smoke")
    assert workspace.absolute() == Workspace(tmp_path / "d", tmp_path / "r")  # the tests run in tmp_path


def test_run_writes_under_marlbench_results_and_reads_marlbench_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MARLBENCH_DATA", str(tmp_path / "env-data"))
    monkeypatch.setenv("MARLBENCH_RESULTS", str(tmp_path / "env-results"))
    args = ["run", "--algo", "bc", "--suite", "matrix", "--task", "xor", "--quality", "ab", "--profile", "smoke"]
    code, out, _ = run_cli(capsys, *args, "--steps", "5")
    assert code == 0, out
    assert f"run directory: {tmp_path / 'env-results' / 'matrix' / 'xor' / 'ab' / 'bc' / 'default' / 'seed0'}" in out
    assert (tmp_path / "env-data" / "matrix" / "xor" / "ab" / "meta.json").is_file()
    code, out, _ = run_cli(capsys, *args, "--steps", "5", "--results", "flag-results", "--data", "flag-data")
    assert code == 0 and "run directory: flag-results/matrix/xor/ab/bc/default/seed0" in out
    assert (tmp_path / "flag-data" / "matrix" / "xor" / "ab" / "meta.json").is_file()


def test_training_reads_only_the_paths_it_is_given(make_request, tmp_path, monkeypatch):
    """Inner functions never consult the environment: the request's data root is the one used."""
    from marlbench.train import train

    monkeypatch.setenv("MARLBENCH_DATA", str(tmp_path / "elsewhere"))
    outcome = train(make_request(quality="ab", profile="smoke", steps=5, data=tmp_path / "given"))
    assert outcome.result["status"] == "completed"
    assert (tmp_path / "given" / "matrix" / "xor" / "ab" / "meta.json").is_file()
    assert not (tmp_path / "elsewhere").exists()
    display = json.loads((outcome.run_dir / "config.json").read_text())["display"]
    assert display == {"display_name": "BC", "column_order": 0}

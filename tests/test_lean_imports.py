"""What each side imports, in fresh interpreters: training (``marlbench.train``, and
``marlbench.grid``, which a Ray trial process imports to run its trial) needs neither pandas nor
scipy; ``marlbench report`` reads files only, so it imports neither torch, nor an algorithm, nor a
simulator, and still heads its columns with the algorithms' display names in their column order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from marlbench.algorithm import all_algorithms
from marlbench.cli import main
from marlbench.train import train

TRAINING_FORBIDDEN = ("pandas", "scipy")
REPORT_FORBIDDEN = ("torch", "algorithms", "mujoco", "gymnasium_robotics")
# Display names that differ from the registry names, and a column order that differs from the
# alphabetical one (alberdice < bc < optdice by name; BC, OptDICE, AlberDICE by column_order).
ALGORITHMS = ("alberdice", "bc", "optdice")
YAML = (
    "name: lean\nprofile: smoke\nmetric: expected_return\nalgorithms: {algorithms}\nseeds: [0]\n"
    "instances: [matrix/xor/ab]\n"
)


def _loaded(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints a JSON object as its last line."""
    completed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


LOADED = "tops = sorted({{name.split('.')[0] for name in sys.modules}} & set({forbidden!r}))\n"


def test_a_training_run_imports_neither_pandas_nor_scipy(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from marlbench.train import RunRequest, train\n"
        "from marlbench.workspace import Workspace\n"
        "import marlbench.grid  # what a Ray trial process imports to find run_trial\n"
        "workspace = Workspace.resolve(data=sys.argv[1], results=sys.argv[2])\n"
        "request = RunRequest(algo='bc', suite='matrix', task='xor', quality='ab', seed=0, profile='smoke', steps=5,\n"
        "                     data=workspace.data, results=workspace.results, progress=False, threads=1)\n"
        "status = train(request).result['status']\n"
        + LOADED.format(forbidden=TRAINING_FORBIDDEN)
        + "print(json.dumps({'status': status, 'loaded': tops}))\n"
    )
    answer = _loaded(code, str(tmp_path / "data"), str(tmp_path / "results"))
    assert answer == {"status": "completed", "loaded": []}


def _report_in_a_fresh_interpreter(yaml_path: Path, results: Path, out: Path) -> dict:
    code = (
        "import json, sys\n"
        "from marlbench.cli import main\n"
        "code = main(['report', sys.argv[1], '--results', sys.argv[2], '--out', sys.argv[3], '--no-figures'])\n"
        + LOADED.format(forbidden=REPORT_FORBIDDEN)
        + "print(json.dumps({'code': code, 'loaded': tops}))\n"
    )
    return _loaded(code, str(yaml_path), str(results), str(out))


def _table_lines(report: Path) -> list[str]:
    table = report.read_text().split("## ")[1]
    return [line for line in table.splitlines() if line.startswith("| ")]


def test_the_report_reads_files_only_and_heads_columns_with_display_names_in_column_order(
    make_request, tmp_path: Path, capsys
) -> None:
    results = tmp_path / "results"
    for algo in ALGORITHMS:
        train(make_request(algo=algo, task="xor", quality="ab", profile="smoke", steps=10, results=results / "smoke"))
    registered = all_algorithms()
    ordered = sorted(ALGORITHMS, key=lambda name: (registered[name].column_order, name))
    assert ordered != sorted(ALGORITHMS), "the test needs a column order other than the alphabetical one"
    headings = [registered[name].display_name for name in ordered]

    # No plan: the runs' config.json give headings and order; the report says the grid was not planned.
    listed = tmp_path / "listed.yaml"
    listed.write_text(YAML.format(algorithms="all"))
    answer = _report_in_a_fresh_interpreter(listed, results, tmp_path / "unplanned")
    assert answer == {"code": 0, "loaded": []}
    text = (tmp_path / "unplanned" / "lean.md").read_text()
    assert "No grid plan beside these results" in text and "has not been planned on this machine" in text
    lines = _table_lines(tmp_path / "unplanned" / "lean.md")
    assert lines[0] == "| task | dataset | " + " | ".join(headings) + " |"
    assert lines[1].count("±") == len(ALGORITHMS), lines[1]

    # With the plan the grid writes: every registered algorithm, statuses of cells without runs.
    assert main(["grid", str(listed), "--results", str(results), "--plan-only"]) == 0
    capsys.readouterr()
    answer = _report_in_a_fresh_interpreter(listed, results, tmp_path / "planned")
    assert answer == {"code": 0, "loaded": []}
    text = (tmp_path / "planned" / "lean.md").read_text()
    assert "from the grid plan made" in text and "No grid plan" not in text
    every = sorted(registered, key=lambda name: (registered[name].column_order, name))
    lines = _table_lines(tmp_path / "planned" / "lean.md")
    assert lines[0] == "| task | dataset | " + " | ".join(registered[name].display_name for name in every) + " |"
    cells = dict(zip(every, [cell.strip() for cell in lines[1].split("|")[3:-1]], strict=True))
    assert all("±" in cells[name] for name in ALGORITHMS), cells
    assert cells["omsd"] == "n/a", "OMSD is continuous-only: the plan says so, the report shows it"
    assert {cells[name] for name in every if name not in ALGORITHMS and name != "omsd"} == {"—"}

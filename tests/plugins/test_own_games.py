"""A suite from outside marlbench, found through a real entry point by the real command line.

Each test writes an ``own_games-0.1.dist-info`` folder (``METADATA`` and ``entry_points.txt``
in the group ``marlbench.suites``) into a temporary directory and runs the installed
``marlbench`` command in a subprocess with that directory and ``tests/plugins`` (the
package) on ``PYTHONPATH``: importlib.metadata finds the entry point as it would for an
installed package. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent
MARLBENCH = Path(sys.executable).parent / "marlbench"
pytestmark = pytest.mark.timeout(120)


def install_entry_point(site: Path, entry: str) -> None:
    """What installing the package would leave on ``sys.path``: its dist-info with one suite entry point."""
    dist_info = site / "own_games-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: own_games\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[marlbench.suites]\n{entry}\n")


def marlbench(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(PLUGINS)])
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [str(MARLBENCH), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=100, check=False
    )


def final_result(completed: subprocess.CompletedProcess, cwd: Path) -> dict:
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.startswith("run directory: ")]
    run_dir = cwd / lines[-1].removeprefix("run directory: ")
    return json.loads((run_dir / "result.json").read_text())["final"]


def test_an_outside_suite_lists_generates_trains_and_evaluates(tmp_path: Path) -> None:
    site, data, results = tmp_path / "site", tmp_path / "own-data", tmp_path / "own-results"
    install_entry_point(site, "own-games = own_games:OwnGames")

    listed = marlbench(site, tmp_path, "suites")
    assert listed.returncode == 0, listed.stderr
    assert "own-games: three one-step games" in listed.stdout and "matrix:" in listed.stdout
    assert "trio       agents 3, obs 1, state 1, actions 3 discrete" in listed.stdout
    assert "qualities: bc-cc" in listed.stdout and "qualities: abb" in listed.stdout

    where = ["--suite", "own-games", "--task", "trio", "--quality", "abb", "--data", str(data)]
    generated = marlbench(site, tmp_path, "data", "generate", *where)
    assert generated.returncode == 0, generated.stderr
    meta = json.loads((data / "own-games" / "trio" / "abb" / "meta.json").read_text())
    assert meta["spec"]["n_agents"] == 3 and meta["spec"]["episode_limit"] == 1
    assert meta["statistics"]["episodes"] == 300
    assert "ABB               300   1.000" in generated.stdout
    assert "AAA                 0   0.000" in generated.stdout

    # BC on data of the single joint action (A,B,B) puts (nearly) all probability on it:
    # the expected return is its payoff, 1.
    common = ["--threads", "1", "--results", str(results), "--data", str(data)]
    bc = final_result(marlbench(site, tmp_path, "run", "--algo", "bc", *where[:6], "--steps", "200", *common), tmp_path)
    assert bc["return_mean"] == 1.0
    assert bc["expected_return"] == pytest.approx(1.0, abs=0.01)
    assert bc["joint_action_probs"]["ABB"] > 0.99

    # CQL-MA on the climbing game's (B,B)=7 / (C,C)=5 data (generated on the fly): each agent's
    # in-data value of B (7) beats C's (5), and its greedy policy gives (B,B), whose payoff is 7.
    climb = ["--suite", "own-games", "--task", "climb", "--quality", "bc-cc"]
    cql = final_result(marlbench(site, tmp_path, "run", "--algo", "cql", *climb, "--steps", "200", *common), tmp_path)
    assert (data / "own-games" / "climb" / "bc-cc" / "meta.json").is_file()
    assert cql["return_mean"] == 7.0
    assert cql["expected_return"] == pytest.approx(7.0, abs=0.01)


def test_a_suite_under_a_taken_name_is_an_error_naming_both_providers(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_entry_point(site, "matrix = own_games.duplicate:MatrixAgain")
    completed = marlbench(site, tmp_path, "suites")
    assert completed.returncode == 2
    message = completed.stderr
    assert "suite 'matrix' is provided twice" in message
    assert "by marlbench.suites.matrix (built in)" in message
    entry_point = "entry point 'matrix = own_games.duplicate:MatrixAgain' (marlbench.suites)"
    assert f"and by {entry_point} of package own_games 0.1" in message

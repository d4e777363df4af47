"""result.json's provenance: which code (version, commit, uncommitted changes), which software
(Python, torch, numpy) and which machine (host, CPU, GPU, threads) produced a result."""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path

import numpy as np
import torch

import marlbench
from marlbench.provenance import git_state
from marlbench.train import train

SOURCE = Path(marlbench.__file__).resolve().parent.parent


def _git(directory: Path, *args: str) -> str:
    command = ["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_result_records_code_software_and_machine(make_request):
    result = train(make_request(profile="smoke", threads=1)).result
    provenance = result["provenance"]
    assert set(provenance) == {
        "marlbench_version", "commit", "dirty", "python", "torch", "numpy", "host", "cpu", "gpu", "threads",
    }  # fmt: skip
    assert provenance["marlbench_version"] == marlbench.__version__
    assert (provenance["commit"], provenance["dirty"]) == git_state(SOURCE)
    assert provenance["python"] == platform.python_version()
    assert provenance["torch"] == torch.__version__ and provenance["numpy"] == np.__version__
    assert provenance["host"] == socket.gethostname()
    assert isinstance(provenance["cpu"], str) and provenance["cpu"]
    assert provenance["gpu"] is None  # a CPU run
    assert provenance["threads"] == 1


def test_git_state_of_this_checkout_matches_git():
    if (SOURCE / ".git").exists():
        status = _git(SOURCE, "status", "--porcelain", "--untracked-files=no")
        assert git_state(SOURCE) == (_git(SOURCE, "rev-parse", "HEAD"), bool(status))
    else:
        assert git_state(SOURCE) == (None, None)


def test_git_state_of_a_work_tree_clean_then_dirty_and_of_a_plain_directory(tmp_path):
    assert git_state(tmp_path) == (None, None)
    _git(tmp_path, "init", "-q")
    (tmp_path / "module.py").write_text("x = 1\n")
    _git(tmp_path, "add", "module.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    commit = _git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == (commit, False)
    (tmp_path / "module.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (commit, True)
    (tmp_path / "inner").mkdir()
    assert git_state(tmp_path / "inner") == (None, None), "only the top of a work tree is its checkout"

"""Each run sets its own thread count (torch, BLAS pools, child processes) and records it in
config.json's runtime section, outside the run's identity."""

from __future__ import annotations

import json
import os
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from marlbench.cli import main
from marlbench.train import CONFIG_FILE, THREAD_VARIABLES, available_cores, set_threads, train


@pytest.fixture(autouse=True)
def _restore_thread_variables(monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "unset by the test")


def test_set_threads_sets_torch_and_the_variables_child_processes_read():
    assert set_threads(2) == 2
    assert torch.get_num_threads() == 2
    assert {name: os.environ[name] for name in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, "2")


def test_the_default_is_torchs_count_but_at_most_the_available_cores(monkeypatch):
    torch.set_num_threads(2)
    assert set_threads(None) == min(2, available_cores())
    monkeypatch.setattr("marlbench.train.available_cores", lambda: 1)
    torch.set_num_threads(2)
    assert set_threads(None) == 1 and torch.get_num_threads() == 1


def test_loaded_blas_pools_are_limited_through_threadpoolctl_when_installed(monkeypatch):
    calls = []
    fake = types.ModuleType("threadpoolctl")
    fake.threadpool_limits = lambda limits: calls.append(limits)
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    set_threads(1)
    assert calls == [1]


class _Interrupted(Exception):
    pass


def test_a_run_resumed_with_another_thread_count_is_the_same_run(make_request):
    def stop(step: int, run_dir: Path) -> None:
        raise _Interrupted(step)

    request = make_request(profile="smoke", threads=2)
    with pytest.raises(_Interrupted):
        train(request, on_checkpoint=stop)
    run_dir = next(request.results.rglob(CONFIG_FILE)).parent
    assert json.loads((run_dir / CONFIG_FILE).read_text())["runtime"]["threads"] == 2
    resumed = train(replace(request, threads=1))
    assert resumed.result["status"] == "completed"
    assert json.loads((run_dir / CONFIG_FILE).read_text())["runtime"]["threads"] == 1
    assert resumed.result["provenance"]["threads"] == 1 and torch.get_num_threads() == 1


def test_run_threads_option_is_applied_and_recorded(capsys):
    args = ["run", "--algo", "bc", "--suite", "matrix", "--task", "xor", "--quality", "ab", "--profile", "smoke"]
    assert main([*args, "--threads", "2"]) == 0
    config = json.loads(Path("results/matrix/xor/ab/bc/default/seed0", CONFIG_FILE).read_text())
    assert config["runtime"]["threads"] == 2 and torch.get_num_threads() == 2

"""One run per run directory: a second run of the same cell is refused with the holder's host and
pid, a stale lock is taken over safely, another host's lock only after its timeout or with
--break-lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import RUN, RUN_DIR, run_cli

from marlbench.errors import RunLockedError
from marlbench.runlock import LOCK_FILE, LOCK_TIMEOUT_S, acquire_run_lock
from marlbench.train import METRICS_FILE, RESULT_FILE


def _write_lock(run_dir: Path, host: str, pid: int, age_s: float) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    path.write_text(json.dumps({"host": host, "pid": pid, "started": time.time() - age_s}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def _ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_second_run_of_the_same_cell_is_refused_then_the_killed_ones_lock_is_recovered(capsys, tmp_path):
    command = [sys.executable, "-m", "marlbench.cli", *RUN, "--steps", "600"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (RUN_DIR / METRICS_FILE).exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run did not start training within 120 s"
            time.sleep(0.01)
        code, _, err = run_cli(capsys, *RUN, "--steps", "600")
        assert first.poll() is None, "the first run ended before the second was tried"
    finally:
        first.kill()
        first.wait()
    assert code == 2
    assert f"expected no other run in this directory, found a run holding {LOCK_FILE}: " in err
    assert f"host {socket.gethostname()}, pid {first.pid}, started " in err
    assert not (RUN_DIR / RESULT_FILE).exists()

    code, out, err = run_cli(capsys, *RUN, "--steps", "600")  # the same command again: resumes
    assert code == 0, err
    assert f"took over a stale lock (its process {first.pid} on this host has ended)" in err
    keys = [(r["kind"], r["step"]) for r in map(json.loads, (RUN_DIR / METRICS_FILE).read_text().splitlines())]
    assert len(keys) == len(set(keys)) and ("eval", 600) in keys
    assert not (RUN_DIR / LOCK_FILE).exists()


def test_a_stale_lock_of_an_ended_process_on_this_host_is_taken_over(capsys):
    pid = _ended_pid()
    _write_lock(RUN_DIR, socket.gethostname(), pid, age_s=5)
    code, _, err = run_cli(capsys, *RUN)
    assert code == 0
    assert f"took over a stale lock (its process {pid} on this host has ended)" in err


def test_another_hosts_lock_is_reported_with_its_age_and_break_lock_takes_it(capsys):
    _write_lock(RUN_DIR, "node-b", 4242, age_s=90)
    code, _, err = run_cli(capsys, *RUN)
    assert code == 2
    assert "found a run holding run.lock: host node-b, pid 4242, started " in err
    assert "lock refreshed 90 s ago" in err or "lock refreshed 91 s ago" in err
    assert f"taken over once not refreshed for {LOCK_TIMEOUT_S // 60} minutes" in err
    assert "rerun the same command with --break-lock" in err
    code, out, err = run_cli(capsys, *RUN, "--break-lock")
    assert code == 0 and "final return:" in out
    assert "took over a stale lock (--break-lock)" in err


def test_another_hosts_lock_older_than_the_timeout_is_taken_over(capsys):
    _write_lock(RUN_DIR, "node-b", 4242, age_s=LOCK_TIMEOUT_S + 120)
    code, _, err = run_cli(capsys, *RUN)
    assert code == 0
    assert f"not refreshed for {LOCK_TIMEOUT_S // 60 + 2} minutes, more than {LOCK_TIMEOUT_S // 60}" in err


def test_an_unreadable_lock_is_reported_and_break_lock_takes_it(capsys):
    RUN_DIR.mkdir(parents=True)
    (RUN_DIR / LOCK_FILE).write_text("{not json")
    os.utime(RUN_DIR / LOCK_FILE, (time.time() - 60, time.time() - 60))
    code, _, err = run_cli(capsys, *RUN)
    assert code == 2
    assert "found an unreadable lock file run.lock (9 bytes, modified 60 s ago)" in err
    assert run_cli(capsys, *RUN, "--break-lock")[0] == 0


RACER = """
import pathlib, sys, time
from marlbench.errors import RunLockedError
from marlbench.runlock import acquire_run_lock
run_dir, go, stop = map(pathlib.Path, sys.argv[1:])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
try:
    lock = acquire_run_lock(run_dir)
except RunLockedError:
    print("refused", flush=True)
    sys.exit(0)
print("holds", flush=True)
while not stop.exists():
    time.sleep(0.01)
lock.release()
"""


def test_processes_racing_to_take_over_a_stale_lock_let_exactly_one_in(tmp_path):
    run_dir = tmp_path / "run"
    _write_lock(run_dir, socket.gethostname(), _ended_pid(), age_s=5)
    go, stop = tmp_path / "go", tmp_path / "stop"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(run_dir), str(go), str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        assert [racer.stdout.readline().strip() for racer in racers] == ["ready"] * 2
        go.touch()
        answers = sorted(racer.stdout.readline().strip() for racer in racers)
    finally:
        stop.touch()
        for racer in racers:
            racer.wait(timeout=60)
    assert answers == ["holds", "refused"]
    assert not (run_dir / LOCK_FILE).exists()


def test_a_run_whose_lock_was_taken_over_stops_and_refreshing_keeps_a_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr("marlbench.runlock.LOCK_REFRESH_S", 0)
    lock = acquire_run_lock(tmp_path)
    os.utime(lock.path, (time.time() - 600, time.time() - 600))
    lock.refresh()
    assert time.time() - lock.path.stat().st_mtime < 60
    lock.path.write_text(json.dumps({"host": "node-b", "pid": 1, "started": time.time()}))
    with pytest.raises(RunLockedError, match="taken over by another process"):
        lock.refresh()
    lock.release()
    assert lock.path.exists(), "a lock another process holds is never removed"

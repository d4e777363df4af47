"""One run per run directory: the lock a training run holds on it (``run.lock``).

:func:`acquire_run_lock` takes a run directory's lock, taking over a stale one (or any one
with ``--break-lock``); :class:`RunLock` is the hold, refreshed while the run trains and
released at its end. :func:`storage_errors`, through which the lock and :mod:`marlbench.train`
write, turns a full disk or an unwritable results root into an error naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from marlbench.errors import RunDirectoryError, RunLockedError

LOCK_FILE = "run.lock"
LOCK_TIMEOUT_S = 30 * 60
"""A lock not refreshed for this long is stale, whichever host holds it."""
LOCK_REFRESH_S = 60
"""How often a training run refreshes its lock's modification time."""


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def _free_space(path: Path) -> str:
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    return f"{shutil.disk_usage(existing).free / 2**20:.1f} MiB free there"


@contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """A full disk, a read-only or unwritable results root: an error naming ``path``."""
    advice = (
        "Free space or make the directory writable (or pass --results with another directory), then rerun "
        "the same command: the run resumes from its last checkpoint"
    )
    expected = "a writable directory with free space"
    try:
        yield
    except OSError as error:
        if error.errno not in _STORAGE_ERRNOS:
            raise
        found = f"{error.strerror} ({errno.errorcode[error.errno]}"
        found += f", {_free_space(path)})" if error.errno in (errno.ENOSPC, errno.EDQUOT) else ")"
        raise RunDirectoryError(path, expected, found, advice) from error
    except RuntimeError as error:
        # torch.save's zip writer reports a write cut short (a full disk) as "unexpected pos".
        if "unexpected pos" not in str(error):
            raise
        found = f"a write cut short ({str(error).strip()}), as on a full disk; {_free_space(path)}"
        raise RunDirectoryError(path, expected, found, advice) from error


class RunLock:
    """This process's hold on a run directory: ``run.lock``, created with O_CREAT|O_EXCL (atomic
    on local and shared file systems), holding host, pid and start time; a training run
    refreshes its modification time every ``LOCK_REFRESH_S`` seconds.

    A lock is stale when its process on this host has ended, or when it has not been
    refreshed for ``LOCK_TIMEOUT_S`` (a lock of another host, whose process cannot be
    checked from here); ``--break-lock`` takes any lock over."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self._text = text
        self._refreshed = time.monotonic()

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed < LOCK_REFRESH_S:
            return
        if _read_text(self.path) != self._text:
            raise RunLockedError(
                self.path,
                "this run's lock",
                "it taken over by another process (--break-lock, or a lock timeout)",
                "This run stops so that two runs never write one directory",
            )
        with storage_errors(self.path):
            os.utime(self.path)
        self._refreshed = now

    def release(self) -> None:
        if _read_text(self.path) == self._text:
            self.path.unlink(missing_ok=True)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _age_s(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has ended, only not yet reaped


def _lock_holder(text: str) -> dict[str, Any] | None:
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return None
    valid = isinstance(holder, dict) and isinstance(holder.get("host"), str) and isinstance(holder.get("pid"), int)
    return holder if valid and isinstance(holder.get("started"), (int, float)) else None


def _stale_reason(holder: Mapping[str, Any], age: float) -> str | None:
    if age > LOCK_TIMEOUT_S:
        return f"not refreshed for {age / 60:.0f} minutes, more than {LOCK_TIMEOUT_S // 60}"
    if holder["host"] == socket.gethostname() and not _process_running(holder["pid"]):
        return f"its process {holder['pid']} on this host has ended"
    return None


def _remove_lock(path: Path, seen: str) -> bool:
    """Remove ``path`` if it still holds ``seen``. One process at a time checks and removes
    (the ``.breaking`` guard), so a lock that another process has just taken is never removed."""
    guard = path.with_name(path.name + ".breaking")
    try:
        with storage_errors(guard):
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        age = _age_s(guard)
        if age is not None and age > LOCK_REFRESH_S:  # a remover that died half-way
            guard.unlink(missing_ok=True)
        return False
    try:
        if _read_text(path) != seen:
            return False
        path.unlink()
        return True
    finally:
        guard.unlink(missing_ok=True)


def _locked_error(run_dir: Path, path: Path, holder: Mapping[str, Any] | None, age: float) -> RunLockedError:
    if holder is None:
        found = f"an unreadable lock file {path.name} ({path.stat().st_size} bytes, modified {age:.0f} s ago)"
        advice = "If no run is using this directory, rerun the same command with --break-lock"
        return RunLockedError(run_dir, "no other run in this directory", found, advice)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"]))
    found = (
        f"a run holding {path.name}: host {holder['host']}, pid {holder['pid']}, started {started}, "
        f"lock refreshed {age:.0f} s ago"
    )
    if holder["host"] == socket.gethostname():
        advice = "Wait for it to finish (or stop it): one directory takes one run at a time"
    else:
        advice = (
            f"A lock of another host is taken over once not refreshed for {LOCK_TIMEOUT_S // 60} minutes; "
            "if that run is gone, rerun the same command with --break-lock"
        )
    return RunLockedError(run_dir, "no other run in this directory", found, advice)


def acquire_run_lock(run_dir: Path, break_lock: bool = False, patience_s: float = 10.0) -> RunLock:
    """Take ``run_dir``'s lock, taking over a stale one (or any one with ``break_lock``)."""
    path = run_dir / LOCK_FILE
    text = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with storage_errors(path):
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            seen, age = _read_text(path), _age_s(path)
        if seen is None or age is None:
            continue  # released between our two looks
        holder = _lock_holder(seen)
        if holder is None and age < 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # its creator is still writing it
            continue
        reason = "--break-lock" if break_lock else None if holder is None else _stale_reason(holder, age)
        if reason is None:
            raise _locked_error(run_dir, path, holder, age)
        if _remove_lock(path, seen):
            print(f"marlbench: {path}: took over a stale lock ({reason}): {seen.strip()}", file=sys.stderr)
        elif time.monotonic() < deadline:
            time.sleep(0.05)
        else:
            raise RunLockedError(run_dir, "to take the lock", "other processes taking it over at the same time")
    try:
        with storage_errors(path), os.fdopen(descriptor, "w") as handle:
            handle.write(text)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return RunLock(path, text)

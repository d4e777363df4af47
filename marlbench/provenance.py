"""Provenance: the code, software and machine a result comes from.

:func:`provenance` is recorded in every ``result.json``: the marlbench version, the git commit
of the source tree and whether tracked files differ from it, the Python, torch and numpy
versions, the host, the CPU model, the GPU (for a CUDA run) and torch's thread count.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marlbench import __version__


def provenance(device: torch.device) -> dict[str, Any]:
    """The code and machine a result comes from."""
    commit, dirty = git_state(Path(__file__).resolve().parent.parent)
    return {
        "marlbench_version": __version__,
        "commit": commit,
        "dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }


def git_state(source: Path) -> tuple[str | None, bool | None]:
    """The commit checked out at ``source`` and whether tracked files differ from it, when
    ``source`` is the top of a git work tree; ``(None, None)`` otherwise."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=60)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != source.resolve():
            return None, None
        head = git("rev-parse", "--verify", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    commit = head.stdout.strip() if head.returncode == 0 else None
    return commit, bool(status.stdout.strip()) if status.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

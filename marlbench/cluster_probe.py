"""The task ``marlbench grid --address`` runs on every node before the first trial.

Kept apart from ``marlbench.grid`` and free of heavy imports: a Ray worker unpickling it
imports this module only, not torch or the algorithms, so the check answers in seconds.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def probe_paths(token_path: str, token: str, datasets: list[str]) -> str | None:
    """On one node: is the results directory the driver's (its probe file is there) and
    writable, and can every dataset be read? ``None``, or what is wrong there."""
    node = socket.gethostname()
    probe = Path(token_path)
    try:
        found = probe.read_text()
    except OSError as error:
        return f"node {node}: {probe.parent} does not hold the driver's probe file ({error.strerror})"
    if found != token:
        return f"node {node}: {probe.parent} holds another probe file than the driver wrote"
    reply = probe.with_name(f"{probe.name}.{node}.{os.getpid()}")
    try:
        reply.write_text(token)
        reply.unlink()
    except OSError as error:
        return f"node {node}: cannot write in {probe.parent} ({error.strerror})"
    for root in map(Path, datasets):
        try:
            for path in [root / "meta.json", *sorted(root.glob("*.npy"))]:
                with open(path, "rb") as handle:
                    handle.read(1)
        except OSError as error:
            return f"node {node}: cannot read the dataset {root} ({error.strerror}: {error.filename})"
    return None

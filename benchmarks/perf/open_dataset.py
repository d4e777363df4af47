"""What opening a dataset costs on a 1M-transition HalfCheetah-shaped dataset (6 agents, obs 23,
state 138, 1-d actions; about 1.1 GB on disk).

``Dataset.open`` checks every file's sha256 against ``meta.json`` (what ``marlbench data
verify`` checks) besides shapes, dtypes, finiteness and row invariants, and caches the sha256s
and the outcome in ``.checked.json`` keyed by each file's size, mtime, ctime and inode. Prints
the seconds of: the write, an open with no cache (a copied or downloaded dataset, or a
read-only directory: every open), an open with the cache, an open with ``checksums=False``
and no cache (the checks ``Dataset.open`` made before it hashed: structure and content), and
``verify()``. The files stay in the page cache between steps, so reads come from memory; a
cold first open adds reading 1.1 GB from disk. Asserts nothing.
Run: python benchmarks/perf/open_dataset.py [--transitions N] [--repeats K]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from marlbench.data.episodes import pack_episodes
from marlbench.data.store import CACHE_FILE, Dataset, write_dataset
from marlbench.spec import EnvSpec

HALFCHEETAH = EnvSpec(n_agents=6, obs_dim=23, state_dim=138, action_type="continuous", action_dim=1, episode_limit=1000)
HORIZON = 1000


def synthetic_fields(transitions: int) -> dict[str, np.ndarray]:
    spec, episodes = HALFCHEETAH, max(1, transitions // HORIZON)
    rng = np.random.default_rng(0)
    return pack_episodes(
        obs=rng.standard_normal((episodes, HORIZON + 1, spec.n_agents, spec.obs_dim), dtype=np.float32),
        state=rng.standard_normal((episodes, HORIZON + 1, spec.state_dim), dtype=np.float32),
        actions=rng.uniform(-1, 1, (episodes, HORIZON, spec.n_agents, 1)).astype(np.float32),
        reward=rng.standard_normal((episodes, HORIZON), dtype=np.float32),
        terminated=np.zeros(episodes, dtype=bool),
    )


def seconds(step: Callable[[], object], before: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fields = synthetic_fields(args.transitions)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "halfcheetah"
        started = time.perf_counter()
        write_dataset(
            root, fields, spec=HALFCHEETAH, suite="perf", task="halfcheetah-shapes", quality="random", source={}
        )
        written = time.perf_counter() - started
        del fields
        size = sum(f.stat().st_size for f in root.iterdir()) / 2**20
        print(f"dataset: {args.transitions:,} transitions, {size:.0f} MiB on disk")
        print(f"write_dataset (validate, write and hash in one pass): {written:.2f} s")
        time.sleep(0.1)  # past the file system's clock tick, so the next open caches every file
        Dataset.open(root)

        def drop_cache() -> None:
            (root / CACHE_FILE).unlink(missing_ok=True)

        rows = [
            ("open, no cache (hash + structure + content)", lambda: Dataset.open(root), drop_cache),
            ("open, cached", lambda: Dataset.open(root), lambda: None),
            (
                "open, checksums=False, no cache (structure + content)",
                lambda: Dataset.open(root, checksums=False),
                drop_cache,
            ),
            ("verify() on an opened dataset (re-reads everything)", Dataset.open(root).verify, lambda: None),
        ]
        for label, step, before in rows:
            times = seconds(step, before, args.repeats)
            print(f"{label:55s} median {statistics.median(times):8.4f} s  (min {min(times):.4f}, max {max(times):.4f})")


if __name__ == "__main__":
    main()

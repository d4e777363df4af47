"""Speed of the shared core: dataset write/open, sampling, BC updates, batched evaluation.

Prints numbers; asserts nothing. Run: python benchmarks/perf/core_speed.py [--rows N]
The synthetic dataset has Hopper's shapes from the papers (3 agents, obs 14, state 42,
3-d continuous actions), so sampling numbers carry over to real MaMuJoCo data.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from algorithms.bc import BC, BCConfig
from marlbench.data.episodes import pack_episodes
from marlbench.data.sampler import Sampler
from marlbench.data.store import Dataset, write_dataset
from marlbench.evaluate import evaluate
from marlbench.spec import EnvSpec
from marlbench.suites.matrix import MatrixSuite

HOPPER_SHAPES = EnvSpec(
    n_agents=3, obs_dim=14, state_dim=42, action_type="continuous", action_dim=1, episode_limit=1000
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def anonymous_rss_mib() -> float:
    """Private resident memory now (Linux). Pages of a memory-mapped file that were read
    count as file-backed and the kernel can drop them; a copy of the data would be anonymous."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_dataset(root: Path, rows: int) -> Dataset:
    episodes, horizon = rows // 1000, 999
    rng = np.random.default_rng(0)
    spec = HOPPER_SHAPES
    fields = pack_episodes(
        obs=rng.standard_normal((episodes, horizon + 1, spec.n_agents, spec.obs_dim), dtype=np.float32),
        state=rng.standard_normal((episodes, horizon + 1, spec.state_dim), dtype=np.float32),
        actions=rng.uniform(-1, 1, (episodes, horizon, spec.n_agents, spec.action_dim)).astype(np.float32),
        reward=rng.standard_normal((episodes, horizon), dtype=np.float32),
        terminated=np.zeros(episodes, dtype=bool),
    )
    started = time.perf_counter()
    dataset = write_dataset(root, fields, spec=spec, suite="perf", task="hopper-shapes", quality="random", source={})
    print(f"write + validate {rows:,} rows: {time.perf_counter() - started:.2f} s")
    return dataset


def time_calls(function, repeats: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        size_mib = (
            sum(f.stat().st_size for f in synthetic_dataset(Path(tmp) / "data", args.rows).root.iterdir()) / 2**20
        )
        rss_before_open = anonymous_rss_mib()
        started = time.perf_counter()
        dataset = Dataset.open(Path(tmp) / "data")
        print(f"open + validate: {time.perf_counter() - started:.2f} s")
        sampler = Sampler(dataset, seed=0)
        for batch_size in (256, 1024):
            seconds = time_calls(lambda b=batch_size: sampler.sample(b), 200)
            print(f"sample batch {batch_size}: {seconds * 1e3:.3f} ms ({batch_size / seconds:,.0f} transitions/s)")
        growth = anonymous_rss_mib() - rss_before_open
        print(f"private memory grew {growth:.0f} MiB over open + 400 batches of a {size_mib:.0f} MiB dataset")
        algorithm = BC(dataset.spec, BCConfig(), torch.device("cpu"))
        batch = sampler.sample(256)
        seconds = time_calls(lambda: algorithm.update(batch, 0), 200)
        print(f"BC update, Hopper shapes, batch 256: {1 / seconds:,.0f} updates/s")
    suite = MatrixSuite()
    xor = suite.make_env("xor", 1)
    algorithm = BC(xor.spec, BCConfig(), torch.device("cpu"))
    batch_size = 64
    with tempfile.TemporaryDirectory() as tmp:
        xor_batch = Sampler(suite.generate("xor", "ab-ba", Path(tmp) / "xor"), seed=0).sample(batch_size)
    seconds = time_calls(lambda: algorithm.update(xor_batch, 0), 300)
    print(f"BC update, XOR, batch {batch_size}: {1 / seconds:,.0f} updates/s")
    env = suite.make_env("bridge", 1000)
    bridge_policy = BC(env.spec, BCConfig(), torch.device("cpu"))
    started = time.perf_counter()
    evaluate(bridge_policy, env, seed=0)
    seconds = time.perf_counter() - started
    print(f"evaluation, Bridge, 1000 episodes x 50 steps batched: {seconds:.2f} s ({1000 / seconds:,.0f} episodes/s)")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()

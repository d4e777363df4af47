"""Sampling speed and memory on a 1M-transition HalfCheetah-shaped dataset (6 agents, obs 23,
state 138, 1-d actions, the papers' paper-mode shapes).

Prints batches/s at batch 128, the growth of the process's private (anonymous) memory and
its peak RSS above the baseline; asserts nothing. Targets: at least 2,000 batches/s, and
private memory at most 300 MiB above the baseline however large the dataset (fields are
memory-mapped; the sampler reads only sampled rows). File-backed pages of the memory maps
are the kernel's page cache, reclaimable, and not counted against the target: on recent
kernels a fault maps a whole large page-cache folio, so the file-backed part of RSS
approaches the dataset's size although nothing is copied (printed too, with how many file
pages one batch maps).
Run: python benchmarks/perf/sampler.py [--transitions N]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from marlbench.data.episodes import pack_episodes
from marlbench.data.store import write_dataset
from marlbench.spec import EnvSpec

HALFCHEETAH = EnvSpec(n_agents=6, obs_dim=23, state_dim=138, action_type="continuous", action_dim=1, episode_limit=1000)

MEASURE = """
import sys, time
from pathlib import Path
import torch
from marlbench.data.sampler import Sampler
from marlbench.data.store import Dataset

def status_mib(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

torch.set_num_threads(1)
baseline, anon_baseline = status_mib("VmRSS"), status_mib("RssAnon")
sampler = Sampler(Dataset.open(sys.argv[1]), seed=0)
file_before = status_mib("RssFile")
sampler.sample(128)
first_batch_file = status_mib("RssFile") - file_before
for _ in range(100):
    sampler.sample(128)
batches, started = 0, time.perf_counter()
while time.perf_counter() - started < 5.0:
    sampler.sample(128)
    batches += 1
rate = batches / (time.perf_counter() - started)
peak = status_mib("VmHWM")
print(f"{rate:,.0f} batches/s at batch 128")
print(f"peak RSS {peak:.0f} MiB, {peak - baseline:.0f} MiB above the baseline of {baseline:.0f} MiB (torch imported)")
private_growth = status_mib("RssAnon") - anon_baseline
verdict = "met" if private_growth <= 300 else "NOT met"
print(f"private memory grew {private_growth:.0f} MiB (target: at most 300 MiB above the baseline: {verdict})")
print(f"of which private memory grew {private_growth:.0f} MiB; the rest are file-backed pages "
      f"of the memory-mapped fields ({status_mib('RssFile'):.0f} MiB now), shared with the page cache and reclaimable")
print(f"the first batch of 128 rows alone mapped {first_batch_file:.0f} MiB of file pages: the kernel maps whole "
      f"page-cache folios on a fault (large folios on ext4 since Linux 6.x), not single 4 KiB pages")
"""


def write_synthetic(root: Path, transitions: int) -> None:
    spec, horizon = HALFCHEETAH, 1000
    episodes = transitions // horizon
    rng = np.random.default_rng(0)
    fields = pack_episodes(
        obs=rng.standard_normal((episodes, horizon + 1, spec.n_agents, spec.obs_dim), dtype=np.float32),
        state=rng.standard_normal((episodes, horizon + 1, spec.state_dim), dtype=np.float32),
        actions=rng.uniform(-1, 1, (episodes, horizon, spec.n_agents, 1)).astype(np.float32),
        reward=rng.standard_normal((episodes, horizon), dtype=np.float32),
        terminated=np.zeros(episodes, dtype=bool),
    )
    write_dataset(root, fields, spec=spec, suite="perf", task="halfcheetah-shapes", quality="random", source={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "halfcheetah"
        write_synthetic(root, args.transitions)
        size = sum(f.stat().st_size for f in root.iterdir()) / 2**20
        print(f"dataset: {args.transitions:,} transitions, {size:.0f} MiB on disk")
        # A fresh process (Linux /proc peak), so the writer's memory does not count.
        subprocess.run([sys.executable, "-c", MEASURE, str(root)], check=True)
    print(f"(writer process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()

"""Speed of the MaMuJoCo environments: raw env steps/s and one evaluation's wall time.

Prints numbers; asserts nothing. Run: python benchmarks/perf/mamujoco_env.py [--tasks hopper ant]
For each task: env steps/s of a single env with uniform random actions (in process), and
the wall time of one 32-episode x 1000-step evaluation (``marlbench.evaluate.evaluate``
with a zero-action policy, the shape of every training run's evaluation) stepping in
process and with worker processes, plus the time to create the environment. On a busy
machine the wall times grow; the CPU seconds of the main process and of the busiest worker
(main + busiest worker is about the wall time on an idle machine) change much less.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from marlbench.algorithm import Algorithm, AlgorithmConfig
from marlbench.evaluate import evaluate
from marlbench.suites.mamujoco.env import MaMuJoCoEnv, default_workers
from marlbench.suites.mamujoco.tasks import TASKS


class ZeroPolicy(Algorithm):
    """Always the zero action: evaluation cost without a network."""

    name = "perf-zero"
    title = "zero actions"

    def __init__(self, spec):
        super().__init__(spec, AlgorithmConfig(), torch.device("cpu"))

    def update(self, batch, step):
        return {}

    def act(self, obs, avail, deterministic=True):
        return torch.zeros(obs.shape[0], self.spec.n_agents, self.spec.action_dim)


def single_env_steps_per_second(task: str, steps: int) -> float:
    env = MaMuJoCoEnv(task, 1, n_workers=0)
    rng = np.random.default_rng(0)
    shape = (1, env.spec.n_agents, env.spec.action_dim)
    actions = rng.uniform(-1.0, 1.0, (steps,) + shape).astype(np.float32)
    env.reset(0)
    episode = 0
    started = time.perf_counter()
    for t in range(steps):
        done = env.step(actions[t])[4]
        if done[0]:
            episode += 1
            env.reset(episode)
    elapsed = time.perf_counter() - started
    env.close()
    return steps / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def evaluation_seconds(task: str, episodes: int, n_workers: int, repeats: int) -> dict[str, float]:
    """Creation time, the best of ``repeats`` evaluations (wall time, and CPU time of the main
    process and of the busiest worker during it), and the mean return."""
    started = time.perf_counter()
    env = MaMuJoCoEnv(task, episodes, n_workers=n_workers)
    created = time.perf_counter() - started
    policy = ZeroPolicy(env.spec)
    best: dict[str, float] = {"wall": float("inf")}
    for repeat in range(repeats):
        workers_before = [cpu_seconds(pid) for pid in env.worker_pids]
        main_before, started = time.process_time(), time.perf_counter()
        result = evaluate(policy, env, seed=repeat)
        wall, main_cpu = time.perf_counter() - started, time.process_time() - main_before
        workers = [cpu_seconds(pid) - before for pid, before in zip(env.worker_pids, workers_before, strict=True)]
        if wall < best["wall"]:
            best = {"wall": wall, "main_cpu": main_cpu, "worker_cpu": max(workers, default=0.0)}
    env.close()
    return {"create": created, **best, "return": result.return_mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5000, help="steps of the single-env measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts to time (0: in process)")
    parser.add_argument("--repeats", type=int, default=2, help="evaluations per setting; the best is printed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    workers = args.workers if args.workers is not None else sorted({0, 1, default_workers(args.episodes)})
    print(f"default n_workers for {args.episodes} episodes here: {default_workers(args.episodes)}")
    for task in args.tasks:
        rate = single_env_steps_per_second(task, args.steps)
        print(f"{task:12s} single env, random actions: {rate:8.0f} env steps/s")
        for n_workers in workers:
            m = evaluation_seconds(task, args.episodes, n_workers, args.repeats)
            label = "in process" if n_workers == 0 else f"{n_workers} worker{'s' if n_workers > 1 else ''}"
            cpu = f"CPU main {m['main_cpu']:5.2f} s"
            if n_workers:
                cpu += f", busiest worker {m['worker_cpu']:5.2f} s"
            print(
                f"{task:12s} {args.episodes} episodes x {TASKS[task].paper_spec.episode_limit} steps, zero actions, "
                f"{label:10s}: evaluation {m['wall']:6.2f} s  ({cpu}; create {m['create']:5.2f} s; "
                f"return {m['return']:8.1f})"
            )


if __name__ == "__main__":
    main()

"""Updates per second of every registered algorithm at the papers' network shapes.

Shapes: HalfCheetah 6x1 as in the papers' MaMuJoCo data (6 agents, obs 23, state 138,
1-d actions) and a 5m_vs_6m-like discrete task (5 agents, obs 124, state 156, 12
actions); batch 128, hidden 256, mixer 64 (each algorithm's own defaults otherwise).
Prints numbers; asserts nothing. Run: python benchmarks/perf/updates.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from marlbench.algorithm import all_algorithms, resolve_config
from marlbench.data.sampler import Batch
from marlbench.spec import EnvSpec

SHAPES = {
    "halfcheetah-6x1": EnvSpec(
        n_agents=6, obs_dim=23, state_dim=138, action_type="continuous", action_dim=1, episode_limit=1000
    ),
    "5m_vs_6m-like": EnvSpec(
        n_agents=5, obs_dim=124, state_dim=156, action_type="discrete", n_actions=12, episode_limit=70
    ),
}


def random_batch(spec: EnvSpec, size: int) -> Batch:
    n = spec.n_agents

    def obs() -> torch.Tensor:
        return torch.randn(size, n, spec.obs_dim)

    def state() -> torch.Tensor:
        return torch.randn(size, spec.state_dim)

    if spec.discrete:
        actions = torch.randint(0, spec.n_actions, (size, n))
        avail = torch.ones(size, n, spec.n_actions, dtype=torch.bool)
    else:
        actions = torch.rand(size, n, spec.action_dim) * 2 - 1
        avail = None
    return Batch(
        obs=obs(), state=state(), actions=actions, avail=avail, reward=torch.randn(size),
        terminal=(torch.rand(size) < 0.01).float(), next_obs=obs(), next_state=state(), next_avail=avail,
        initial_obs=obs(), initial_state=state(), initial_avail=avail,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per algorithm and shape")
    parser.add_argument("--algos", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    for shape_name, spec in SHAPES.items():
        batch = random_batch(spec, args.batch)
        for name, cls in all_algorithms().items():
            if (args.algos and name not in args.algos) or spec.action_type not in cls.action_types:
                continue
            config = resolve_config(cls, "perf", shape_name, "random", {"batch_size": args.batch})
            algorithm = cls(spec, config, torch.device("cpu"))
            for step in range(1, 11):
                algorithm.update(batch, step)
            updates, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                algorithm.update(batch, 11 + updates)
                updates += 1
            rate = updates / (time.perf_counter() - started)
            print(f"{shape_name:16s} {name:12s} {rate:8.1f} updates/s")


if __name__ == "__main__":
    main()

"""Updates per second of every registered algorithm at the papers' network shapes.

Shapes: HalfCheetah 6x1 as in the papers' MaMuJoCo data (6 agents, obs 23, state 138,
1-d actions), a 5m_vs_6m-like discrete task (5 agents, obs 124, state 156, 12 actions) and
a 10-agent discrete task (obs 200, state 300, 12 actions; InSPO's sequential updates cost
one policy step per agent); batch 128, each algorithm's own network defaults. A
multi-phase algorithm (``phase_starts()``: behaviour pretraining, then the policy) is timed
per phase. Prints numbers; asserts nothing.
Run: python benchmarks/perf/updates.py [--threads 2] [--algos comadice omiga] [--shapes ...]
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
    "10-agents-discrete": EnvSpec(
        n_agents=10, obs_dim=200, state_dim=300, action_type="discrete", n_actions=12, episode_limit=70
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


def phases(algorithm) -> list[tuple[str, int, int | None]]:
    """``(name, first step, first step of the next phase)`` for each phase of an algorithm."""
    starts = algorithm.phase_starts() if hasattr(algorithm, "phase_starts") else {"update": 1}
    ordered = sorted(starts.items(), key=lambda item: item[1])
    ends = [start for _, start in ordered[1:]] + [None]
    return [(name, start, end) for (name, start), end in zip(ordered, ends, strict=True)]


def updates_per_second(algorithm, batch: Batch, start: int, end: int | None, seconds: float) -> float:
    last = (end - 1) if end is not None else None

    def step_at(i: int) -> int:
        return start + i if last is None else min(start + i, last)

    for i in range(10):
        algorithm.update(batch, step_at(i))
    updates, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        algorithm.update(batch, step_at(10 + updates))
        updates += 1
    return updates / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per algorithm, shape and phase")
    parser.add_argument("--steps", type=int, default=10_000, help="run length that places the phase boundaries")
    parser.add_argument("--algos", nargs="*", default=None)
    parser.add_argument("--shapes", nargs="*", default=None, choices=list(SHAPES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    for shape_name, spec in SHAPES.items():
        if args.shapes and shape_name not in args.shapes:
            continue
        batch = random_batch(spec, args.batch)
        for name, cls in all_algorithms().items():
            if (args.algos and name not in args.algos) or spec.action_type not in cls.action_types:
                continue
            config = resolve_config(
                cls, "perf", shape_name, "random", {"batch_size": args.batch}, total_steps=args.steps, spec=spec
            )
            algorithm = cls(spec, config, torch.device("cpu"))
            for phase, start, end in phases(algorithm):
                rate = updates_per_second(algorithm, batch, start, end, args.seconds)
                label = name if phase == "update" else f"{name} ({phase})"
                print(f"{shape_name:18s} {label:24s} {rate:8.1f} updates/s", flush=True)


if __name__ == "__main__":
    main()

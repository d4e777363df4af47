"""Exact dataset compositions of the papers' matrix games (REFERENCE.md).

Penalty XOR qualities name the joint actions in the data: ``ab-ba`` holds (A,B) and
(B,A) in equal shares (ComaDICE's datasets (a)-(d), InSPO's (a)-(c)). M-NE ``uniform``
comes from the behaviour mu(A)=mu(B)=mu(C)=1/3 per agent and ``biased`` from
mu(A)=0.8, mu(B)=mu(C)=0.1; the joint counts are the exact products of the marginals.
The bandit draws joint actions from the two-Gaussian mixture of OMSD.
"""

from __future__ import annotations

import numpy as np

from marlbench.data.episodes import pack_episodes
from marlbench.spec import EnvSpec

DEFAULT_XOR_EPISODES_PER_JOINT_ACTION = 1000
DEFAULT_MNE_EPISODES = 9000  # divisible by 9 (uniform) and by 100 (0.8/0.1 products)
DEFAULT_BANDIT_EPISODES = 1_000_000
MNE_MARGINALS = {"uniform": np.full(3, 1.0 / 3.0), "biased": np.array([0.8, 0.1, 0.1])}
BANDIT_MEANS = np.array([[0.8, 0.8], [-0.8, -0.8]])
BANDIT_STD = 0.3


def joint_action_counts(spec: EnvSpec, task: str, quality: str, episodes: int | None) -> np.ndarray:
    """Number of episodes of every joint action, shape ``[nA, nA]``."""
    n_actions = spec.n_actions or 0
    if task == "xor":
        joint = [(ord(pair[0]) - ord("a"), ord(pair[1]) - ord("a")) for pair in quality.split("-")]
        total = episodes if episodes is not None else DEFAULT_XOR_EPISODES_PER_JOINT_ACTION * len(joint)
        if total % len(joint):
            raise ValueError(f"xor/{quality}: episodes must be a multiple of {len(joint)}, got {total}")
        counts = np.zeros((n_actions, n_actions), dtype=np.int64)
        for first, second in joint:
            counts[first, second] = total // len(joint)
        return counts
    marginal = MNE_MARGINALS[quality]
    total = episodes if episodes is not None else DEFAULT_MNE_EPISODES
    exact = np.outer(marginal, marginal) * total
    counts = np.rint(exact).astype(np.int64)
    if not np.allclose(counts, exact, atol=1e-6):
        raise ValueError(
            f"mne/{quality}: {total} episodes cannot hold the exact joint shares {np.outer(marginal, marginal)}"
        )
    return counts


def one_step_fields(spec: EnvSpec, actions: np.ndarray, reward: np.ndarray) -> dict[str, np.ndarray]:
    """Store fields of one-step episodes: joint ``actions [E, N]`` (or ``[E, N, A]``) and their rewards ``[E]``."""
    episodes = actions.shape[0]
    avail = np.ones((episodes, 2, spec.n_agents, spec.n_actions), dtype=bool) if spec.discrete else None
    return pack_episodes(
        obs=np.ones((episodes, 2, spec.n_agents, spec.obs_dim), dtype=np.float32),
        state=np.ones((episodes, 2, spec.state_dim), dtype=np.float32),
        actions=actions[:, None],
        reward=reward[:, None].astype(np.float32),
        terminated=np.ones(episodes, dtype=bool),
        avail=avail,
    )


def matrix_game_fields(
    spec: EnvSpec, payoff: np.ndarray, task: str, quality: str, episodes: int | None = None
) -> dict[str, np.ndarray]:
    """Store fields of a one-step discrete game, episodes ordered by joint action."""
    counts = joint_action_counts(spec, task, quality, episodes)
    first, second = np.nonzero(counts)
    repeats = counts[first, second]
    actions = np.stack([np.repeat(first, repeats), np.repeat(second, repeats)], axis=1).astype(np.int64)
    return one_step_fields(spec, actions, payoff[actions[:, 0], actions[:, 1]])


def bandit_fields(spec: EnvSpec, seed: int = 0, episodes: int | None = None) -> dict[str, np.ndarray]:
    """OMSD's bandit data: each joint action from one of two isotropic Gaussians, clipped to the box."""
    rng = np.random.default_rng(seed)
    total = episodes if episodes is not None else DEFAULT_BANDIT_EPISODES
    component = rng.integers(0, 2, size=total)
    joint = np.clip(BANDIT_MEANS[component] + BANDIT_STD * rng.standard_normal((total, 2)), -1.0, 1.0)
    actions = joint.astype(np.float32)[:, :, None]
    return one_step_fields(spec, actions, joint[:, 0] * joint[:, 1])

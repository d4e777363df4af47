"""The environment protocol: a vectorised batch of B episodes (DESIGN.md, "Environments")."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from marlbench.spec import EnvSpec

Observation = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""``(obs [B, N, O], state [B, S], avail [B, N, nA] or None)``."""

StepResult = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, dict[str, Any]]
"""``(obs, state, avail, reward [B], done [B], info)``; ``info["won"] [B]`` where a suite has wins."""


class VecEnv(abc.ABC):
    """B independent episodes of one task, stepped together.

    An episode that has finished stays finished until the next :meth:`reset`: its
    actions are ignored, its reward is 0 and its ``done`` stays True, so an evaluator
    can step the whole batch until every episode is done.
    """

    spec: EnvSpec

    def __init__(self, n_envs: int):
        if n_envs < 1:
            raise ValueError(f"n_envs must be positive, got {n_envs}")
        self.n_envs = n_envs

    @abc.abstractmethod
    def reset(self, seed: int) -> Observation:
        """Start B new episodes; the same seed gives the same episodes."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> StepResult:
        """Apply joint actions ``[B, N]`` (int) or ``[B, N, A]`` (float) to every episode."""

    def close(self) -> None:  # noqa: B027 - optional hook; most environments hold nothing
        """Release simulator resources."""

    @property
    def payoff(self) -> np.ndarray | None:
        """For one-step discrete matrix games: the team payoff indexed by joint action."""
        return None

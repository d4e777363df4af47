"""The Multi-Agent MuJoCo tasks of the papers and their ``paper`` observation mode.

The papers' datasets (OMIGA's hdf5 files, which ComaDICE also used) come from an
environment in which agent i observes the whole single-agent Gym observation followed by
a one-hot agent id, the vector standardised by its own mean and standard deviation, and
the global state is the concatenation of all agents' such vectors (OMIGA's
``envs/ma_mujoco/multiagent_mujoco/mujoco_multi.py``, ``get_obs`` / ``get_state``).
That gives obs/state dims Hopper 14/42, HalfCheetah 23/138, Ant 113/226.

The papers ran Gym's v2 tasks on mujoco-py, which cannot be installed today. We use the
v4 tasks (same observation layouts and reward terms as v2/v3, MuJoCo 2.x+ physics
through the ``mujoco`` bindings); Ant-v4 with ``use_contact_forces=True`` restores v2's
111-dim observation. Scores are therefore close to, not identical with, the papers'.
This module imports no simulator, so importers and tests can use it without MuJoCo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marlbench.spec import EnvSpec

PURPOSE = "Multi-Agent MuJoCo"
INSTALL_COMMAND = "pip install -e '.[mamujoco]'"
QUALITIES = ("expert", "medium", "medium-replay", "medium-expert")
OBSERVATION_MODES = ("paper", "local")
EPISODE_LIMIT = 1000


@dataclass(frozen=True)
class MaMuJoCoTask:
    name: str
    scenario: str
    agent_conf: str
    n_agents: int
    single_agent_obs_dim: int
    action_dim: int
    gym_id: str
    gym_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def paper_file_stem(self) -> str:
        """How the papers name this task's files: ``Hopper-v2-3x1`` (+ ``-<quality>.hdf5``)."""
        return f"{self.scenario}-v2-{self.agent_conf}"

    @property
    def paper_spec(self) -> EnvSpec:
        obs_dim = self.single_agent_obs_dim + self.n_agents
        return EnvSpec(
            n_agents=self.n_agents,
            obs_dim=obs_dim,
            state_dim=self.n_agents * obs_dim,
            action_type="continuous",
            action_dim=self.action_dim,
            episode_limit=EPISODE_LIMIT,
        )


TASKS: dict[str, MaMuJoCoTask] = {
    "hopper": MaMuJoCoTask("hopper", "Hopper", "3x1", 3, 11, 1, "Hopper-v4"),
    "ant": MaMuJoCoTask("ant", "Ant", "2x4", 2, 111, 4, "Ant-v4", {"use_contact_forces": True}),
    "halfcheetah": MaMuJoCoTask("halfcheetah", "HalfCheetah", "6x1", 6, 17, 1, "HalfCheetah-v4"),
}


def paper_observations(single_agent_obs: np.ndarray, n_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """``[..., D]`` single-agent observations -> (obs ``[..., N, D+N]``, state ``[..., N*(D+N)]``).

    Agent i's vector is the observation followed by the one-hot id i, standardised by
    the vector's own mean and (population) standard deviation.
    """
    single_agent_obs = np.asarray(single_agent_obs, dtype=np.float64)
    leading = single_agent_obs.shape[:-1]
    ids = np.broadcast_to(np.eye(n_agents), leading + (n_agents, n_agents))
    repeated = np.broadcast_to(single_agent_obs[..., None, :], leading + (n_agents, single_agent_obs.shape[-1]))
    vectors = np.concatenate([repeated, ids], axis=-1)
    mean = vectors.mean(axis=-1, keepdims=True)
    std = vectors.std(axis=-1, keepdims=True)
    obs = ((vectors - mean) / std).astype(np.float32)
    return obs, obs.reshape(leading + (-1,))

"""The matrix suite: small games whose right answers are known (REFERENCE.md, "Matrix and bandit games").

- ``xor``: penalty XOR, two agents, actions {A, B}; r(A,A)=0, r(A,B)=r(B,A)=1, r(B,B)=-2.
- ``mne``: the multi-equilibrium game of InSPO, actions {A, B, C}; r(A,A)=5, r(B,B)=10,
  r(C,C)=20. The paper gives no off-diagonal payoffs; we use 0 (our choice).
- ``bandit``: OMSD's two-agent continuous bandit, one action in [-1, 1] per agent. The
  paper gives no reward formula; r(a) = a1 * a2 is ours: it is maximal (1) at (1, 1) and
  (-1, -1) and -1 at the miscoordinated corners, which fits every published number.
- ``bridge``: AlberDICE's Bridge grid world (see :mod:`marlbench.envs.bridge`).

The one-step games give every agent the constant observation [1] (the agent id is added
by the networks) and the constant state [1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from marlbench.data.generators.bridge import bridge_fields
from marlbench.data.generators.bridge import reference_returns as bridge_reference_returns
from marlbench.data.generators.matrix import bandit_fields, matrix_game_fields
from marlbench.data.store import Dataset, write_dataset
from marlbench.envs.base import Observation, StepResult, VecEnv
from marlbench.envs.bridge import BRIDGE_SPEC, BridgeEnv
from marlbench.envs.registry import Suite, TaskInfo, register_suite
from marlbench.errors import ConfigError
from marlbench.profiles import Profile
from marlbench.spec import EnvSpec

XOR_PAYOFF = np.array([[0.0, 1.0], [1.0, -2.0]], dtype=np.float32)
MNE_PAYOFF = np.diag([5.0, 10.0, 20.0]).astype(np.float32)

XOR_SPEC = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="discrete", n_actions=2, episode_limit=1)
MNE_SPEC = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="discrete", n_actions=3, episode_limit=1)
BANDIT_SPEC = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="continuous", action_dim=1, episode_limit=1)


class _OneStepEnv(VecEnv):
    """Shared reset/step bookkeeping of the one-step games: constant observations, done after one step."""

    def __init__(self, spec: EnvSpec, n_envs: int):
        super().__init__(n_envs)
        self.spec = spec
        self._done = np.zeros(n_envs, dtype=bool)

    def _observation(self) -> Observation:
        obs = np.ones((self.n_envs, self.spec.n_agents, 1), dtype=np.float32)
        state = np.ones((self.n_envs, 1), dtype=np.float32)
        avail = (
            np.ones((self.n_envs, self.spec.n_agents, self.spec.n_actions), dtype=bool) if self.spec.discrete else None
        )
        return obs, state, avail

    def reset(self, seed: int) -> Observation:
        self._done[:] = False
        return self._observation()

    def _team_reward(self, actions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> StepResult:
        reward = np.where(self._done, 0.0, self._team_reward(actions)).astype(np.float32)
        self._done[:] = True
        obs, state, avail = self._observation()
        return obs, state, avail, reward, self._done.copy(), {}


class MatrixGameEnv(_OneStepEnv):
    """A one-step cooperative matrix game with a shared payoff."""

    def __init__(self, spec: EnvSpec, payoff: np.ndarray, n_envs: int):
        super().__init__(spec, n_envs)
        self._payoff = payoff

    @property
    def payoff(self) -> np.ndarray:
        return self._payoff

    def _team_reward(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.int64)
        return self._payoff[actions[:, 0], actions[:, 1]]


class BanditEnv(_OneStepEnv):
    """OMSD's 2-D continuous bandit with r(a) = a1 * a2 on the clipped joint action."""

    def __init__(self, n_envs: int):
        super().__init__(BANDIT_SPEC, n_envs)

    def _team_reward(self, actions: np.ndarray) -> np.ndarray:
        joint = np.clip(np.asarray(actions, dtype=np.float32).reshape(self.n_envs, 2), -1.0, 1.0)
        return joint[:, 0] * joint[:, 1]


def reference_returns(task: str) -> dict[str, float]:
    """The normalisation references a dataset card records (``source.reference_returns``): the
    payoff range of a one-step game (the bandit's r = a1 * a2 spans [-1, 1]); on Bridge the exact
    returns of the uniformly random and the optimal joint policy."""
    if task == "bridge":
        return bridge_reference_returns()
    payoff = {"xor": XOR_PAYOFF, "mne": MNE_PAYOFF, "bandit": np.array([-1.0, 1.0])}[task]
    return {"min": float(payoff.min()), "max": float(payoff.max())}


XOR_QUALITIES = ("ab", "ab-ba", "aa-ab-ba", "aa-ab-ba-bb")
MNE_QUALITIES = ("uniform", "biased")


class MatrixSuite(Suite):
    name = "matrix"
    description = "Small games with known answers: penalty XOR, M-NE, OMSD's 2-D bandit, AlberDICE's Bridge"
    requirements = "none"
    generates_on_the_fly = True
    # Matrix games are tiny. The standard budget is one for every algorithm: 2000 updates,
    # what AlberDICE's alpha annealing needs to settle on XOR (the reference runs ~21,600).
    profiles = {
        "smoke": Profile(
            steps=200,
            eval_every=100,
            eval_episodes=16,
            final_eval_episodes=32,
            log_every=50,
            checkpoint_every=100,
            batch_size=64,
        ),
        "standard": Profile(
            steps=2000,
            eval_every=500,
            eval_episodes=64,
            final_eval_episodes=256,
            log_every=200,
            checkpoint_every=500,
            batch_size=64,
        ),
        "paper": Profile(
            steps=20000,
            eval_every=1000,
            eval_episodes=100,
            final_eval_episodes=1000,
            log_every=500,
            checkpoint_every=2000,
        ),
    }

    def tasks(self) -> dict[str, TaskInfo]:
        return {
            "xor": TaskInfo(
                "xor", XOR_SPEC, XOR_QUALITIES, "penalty XOR; qualities name the joint actions in the data"
            ),
            "mne": TaskInfo("mne", MNE_SPEC, MNE_QUALITIES, "M-NE: equilibria (A,A)=5, (B,B)=10, (C,C)=20"),
            "bandit": TaskInfo(
                "bandit", BANDIT_SPEC, ("gmm",), "2-D continuous bandit, r = a1*a2, optima (1,1), (-1,-1)"
            ),
            "bridge": TaskInfo("bridge", BRIDGE_SPEC, ("optimal", "mixed"), "two agents cross a one-person bridge"),
        }

    def make_env(self, task: str, n_envs: int, **options: Any) -> VecEnv:
        self.task(task)
        if options:
            raise ConfigError(f"matrix/{task} takes no environment options, got {sorted(options)}")
        if task == "xor":
            return MatrixGameEnv(XOR_SPEC, XOR_PAYOFF, n_envs)
        if task == "mne":
            return MatrixGameEnv(MNE_SPEC, MNE_PAYOFF, n_envs)
        if task == "bandit":
            return BanditEnv(n_envs)
        return BridgeEnv(n_envs)

    def generate(
        self,
        task: str,
        quality: str,
        root: Path,
        *,
        seed: int = 0,
        episodes: int | None = None,
        budget: int | None = None,
        overwrite: bool = False,
    ) -> Dataset:
        self.check_quality(task, quality)
        if task == "xor":
            fields = matrix_game_fields(XOR_SPEC, XOR_PAYOFF, "xor", quality, episodes)
        elif task == "mne":
            fields = matrix_game_fields(MNE_SPEC, MNE_PAYOFF, "mne", quality, episodes)
        elif task == "bandit":
            fields = bandit_fields(BANDIT_SPEC, seed, episodes)
        else:
            fields = bridge_fields(quality, seed=seed, episodes=episodes)
        config: dict[str, Any] = {"task": task, "quality": quality, "seed": seed, "episodes": episodes}
        return write_dataset(
            root,
            fields,
            spec=self.task(task).spec,
            suite=self.name,
            task=task,
            quality=quality,
            source={"generator": "marlbench.matrix", "config": config, "reference_returns": reference_returns(task)},
            overwrite=overwrite,
        )


register_suite(MatrixSuite())

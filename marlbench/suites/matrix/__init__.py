"""The matrix suite: small games whose right answers are known (REFERENCE.md, "Matrix and bandit games").

- ``xor`` (penalty XOR) and ``mne`` (M-NE): payoff games (:mod:`marlbench.suites.matrix.games`).
- ``bandit``: OMSD's two-agent continuous bandit (:mod:`marlbench.suites.matrix.games`).
- ``bridge``: AlberDICE's Bridge grid world (:mod:`marlbench.suites.matrix.bridge`).

Every dataset takes seconds to generate, so ``marlbench run`` generates a missing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marlbench.data.store import Dataset, write_dataset
from marlbench.envs.base import VecEnv
from marlbench.errors import ConfigError
from marlbench.profiles import Profile
from marlbench.suites import Suite, TaskInfo
from marlbench.suites.matrix import bridge
from marlbench.suites.matrix.games import (
    BANDIT_REFERENCE_RETURNS,
    BANDIT_SPEC,
    MNE_TASK,
    XOR_TASK,
    BanditEnv,
    PayoffGameEnv,
    bandit_fields,
)

PAYOFF_TASKS = {"xor": XOR_TASK, "mne": MNE_TASK}


def reference_returns(task: str) -> dict[str, float]:
    """The normalisation references a dataset card records (``source.reference_returns``): the
    payoff range of a one-step game (the bandit's r = a1 * a2 spans [-1, 1]); on Bridge the exact
    returns of the uniformly random and the optimal joint policy."""
    if task == "bridge":
        return bridge.reference_returns()
    if task == "bandit":
        return dict(BANDIT_REFERENCE_RETURNS)
    return PAYOFF_TASKS[task].game.reference_returns()


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
        games = {
            name: TaskInfo(name, task.game.spec, task.qualities, task.description)
            for name, task in PAYOFF_TASKS.items()
        }
        return {
            **games,
            "bandit": TaskInfo(
                "bandit", BANDIT_SPEC, ("gmm",), "2-D continuous bandit, r = a1*a2, optima (1,1), (-1,-1)"
            ),
            "bridge": TaskInfo("bridge", bridge.BRIDGE_SPEC, bridge.QUALITIES, "two agents cross a one-person bridge"),
        }

    def make_env(self, task: str, n_envs: int, **options: Any) -> VecEnv:
        self.task(task)
        if options:
            raise ConfigError(f"matrix/{task} takes no environment options, got {sorted(options)}")
        if task in PAYOFF_TASKS:
            return PayoffGameEnv(PAYOFF_TASKS[task].game, n_envs)
        if task == "bandit":
            return BanditEnv(n_envs)
        return bridge.BridgeEnv(n_envs)

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
        if task in PAYOFF_TASKS:
            fields = PAYOFF_TASKS[task].fields(quality, episodes)
        elif task == "bandit":
            fields = bandit_fields(seed, episodes)
        else:
            fields = bridge.bridge_fields(quality, seed=seed, episodes=episodes)
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


SUITE = MatrixSuite()

"""own-games: a suite from outside marlbench, registered through the ``marlbench.suites`` entry point.

Three one-step games of its own, each a :class:`~marlbench.suites.matrix.games.PayoffGame`
(so each spec has ``episode_limit=1`` and the one-step settings of the algorithms apply)
with datasets given as joint-action counts and built by the public
:func:`~marlbench.suites.matrix.games.joint_action_fields`:

- ``climb``: Claus and Boutilier's climbing game, 2 agents x 3 actions; ``bc-cc`` holds
  (B,B) (payoff 7) and (C,C) (payoff 5) in equal shares.
- ``penalty``: the penalty game with k = -10, 2 agents x 3 actions; ``uniform`` holds every
  joint action 100 times (counts as an array shaped like the payoff).
- ``trio``: 3 agents x 3 actions; 3 when all agree (6 on C), 1 when two agree, 0 else;
  ``abb`` holds only the joint action (A,B,B) (payoff 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from marlbench.data.store import Dataset, write_dataset
from marlbench.envs.base import VecEnv
from marlbench.errors import ConfigError
from marlbench.profiles import Profile
from marlbench.suites import Suite, TaskInfo
from marlbench.suites.matrix.games import PayoffGame, PayoffGameEnv, PayoffTask, joint_action_fields


def _trio_payoff() -> np.ndarray:
    payoff = np.zeros((3, 3, 3))
    for joint in np.ndindex(payoff.shape):
        distinct = len(set(joint))
        payoff[joint] = {1: 6.0 if joint[0] == 2 else 3.0, 2: 1.0, 3: 0.0}[distinct]
    return payoff


GAMES = {
    "climb": PayoffTask(
        PayoffGame([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]),
        {"bc-cc": {(1, 1): 500, (2, 2): 500}},
        "climbing game; data of (B,B)=7 and (C,C)=5",
    ),
    "penalty": PayoffTask(
        PayoffGame([[10.0, 0.0, -10.0], [0.0, 2.0, 0.0], [-10.0, 0.0, 10.0]]),
        {"uniform": np.full((3, 3), 100)},
        "penalty game, k = -10; every joint action 100 times",
    ),
    "trio": PayoffTask(
        PayoffGame(_trio_payoff()),
        {"abb": {(0, 1, 1): 300}},
        "three agents: 3 when all agree (6 on C), 1 when two agree; data of (A,B,B) only",
    ),
}

PROFILE = Profile(
    steps=300, eval_every=150, eval_episodes=8, final_eval_episodes=16, log_every=50, checkpoint_every=150
)


class OwnGames(Suite):
    name = "own-games"
    description = "three one-step games from outside marlbench (climbing, penalty, a 3-agent game)"
    requirements = "none"
    generates_on_the_fly = True
    profiles = {"smoke": PROFILE, "standard": PROFILE, "paper": PROFILE}

    def tasks(self) -> dict[str, TaskInfo]:
        return {name: TaskInfo(name, task.game.spec, task.qualities, task.description) for name, task in GAMES.items()}

    def make_env(self, task: str, n_envs: int, **options: Any) -> VecEnv:
        self.task(task)
        if options:
            raise ConfigError(f"{self.name}/{task} takes no environment options, got {sorted(options)}")
        return PayoffGameEnv(GAMES[task].game, n_envs)

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
        if episodes is not None:
            raise ConfigError(f"{self.name} datasets have a fixed size; drop --episodes")
        game = GAMES[task].game
        return write_dataset(
            root,
            joint_action_fields(game, GAMES[task].datasets[quality]),
            spec=game.spec,
            suite=self.name,
            task=task,
            quality=quality,
            source={"generator": "own_games", "reference_returns": game.reference_returns()},
            overwrite=overwrite,
        )

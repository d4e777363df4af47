"""The mamujoco suite: Multi-Agent MuJoCo through gymnasium-robotics, Hopper 3x1, Ant 2x4, HalfCheetah 6x1.

- :mod:`~marlbench.suites.mamujoco.tasks`: the task table and the papers' ``paper`` observations
  (no simulator imported);
- :mod:`~marlbench.suites.mamujoco.env`: the vectorised environment (imports MuJoCo when built);
- :mod:`~marlbench.suites.mamujoco.generate`: behaviour datasets from an online-trained SAC policy;
- :mod:`~marlbench.suites.mamujoco.importers`: the papers' file formats (OMIGA, ComaDICE, OMAR);
- :mod:`~marlbench.suites.mamujoco.download`: where the papers published their files.

This module imports none of the last four until they are used, so the suite is listed
(and says what is missing) where MuJoCo, torch or h5py are not installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marlbench.errors import ConfigError, MissingDependencyError
from marlbench.profiles import Profile
from marlbench.spec import EnvSpec
from marlbench.suites import Suite, TaskInfo
from marlbench.suites.mamujoco.tasks import INSTALL_COMMAND, PURPOSE, QUALITIES, TASKS

if TYPE_CHECKING:
    from marlbench.data.download import SourceEntry
    from marlbench.data.importers.base import Importer
    from marlbench.data.store import Dataset
    from marlbench.envs.base import VecEnv


class MaMuJoCoSuite(Suite):
    name = "mamujoco"
    description = (
        "Multi-Agent MuJoCo (gymnasium-robotics on Gym's v4 tasks, not the papers' v2): "
        "Hopper 3x1, Ant 2x4, HalfCheetah 6x1"
    )
    requirements = f"gymnasium-robotics, gymnasium and mujoco (MuJoCo ships with the wheel): {INSTALL_COMMAND}"
    profiles = {
        # Exercises the whole chain (train, evaluate, checkpoint, report), not learning:
        # `make table3 PROFILE=smoke SEEDS=0,1` runs 11 algorithms x 12 datasets x 2 seeds.
        "smoke": Profile(
            steps=50,
            eval_every=25,
            eval_episodes=2,
            final_eval_episodes=2,
            log_every=25,
            checkpoint_every=25,
            batch_size=64,
        ),
        "standard": Profile(
            steps=200_000,
            eval_every=10_000,
            eval_episodes=10,
            final_eval_episodes=32,
            log_every=1000,
            checkpoint_every=10_000,
        ),
        # ComaDICE: 1M steps, 100 evaluations of 32 episodes.
        "paper": Profile(
            steps=1_000_000,
            eval_every=10_000,
            eval_episodes=32,
            final_eval_episodes=32,
            log_every=1000,
            checkpoint_every=10_000,
        ),
    }

    def tasks(self) -> dict[str, TaskInfo]:
        return {
            name: TaskInfo(
                name,
                task.paper_spec,
                QUALITIES,
                f"{task.scenario} {task.agent_conf} ({task.gym_id}), {task.n_agents} agents, paper observations",
            )
            for name, task in TASKS.items()
        }

    def unavailable_reason(self) -> str | None:
        from marlbench.suites.mamujoco.env import mujoco_modules

        try:
            mujoco_modules()
        except MissingDependencyError as error:
            return str(error)
        except Exception as error:  # an installed but broken MuJoCo
            return f"{PURPOSE} failed to import ({type(error).__name__}: {error}); reinstall with {INSTALL_COMMAND}"
        return None

    def make_env(self, task: str, n_envs: int, **options: Any) -> VecEnv:
        from marlbench.suites.mamujoco.env import ENV_OPTIONS, MaMuJoCoEnv

        self.task(task)
        unknown = sorted(set(options) - set(ENV_OPTIONS))
        if unknown:
            raise ConfigError(
                f"mamujoco/{task}: unknown environment options {unknown} (known: {', '.join(ENV_OPTIONS)})"
            )
        return MaMuJoCoEnv(task, n_envs, **options)

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
        from marlbench.suites.mamujoco.generate import generate_mamujoco_dataset

        self.check_quality(task, quality)
        return generate_mamujoco_dataset(
            TASKS[task], quality, root, seed=seed, budget=budget, episodes=episodes, overwrite=overwrite
        )

    def importers(self) -> Mapping[str, Importer]:
        from marlbench.suites.mamujoco.importers import IMPORTERS

        return IMPORTERS

    def import_target(self, task: str) -> tuple[EnvSpec, dict[str, Any]]:
        """The papers' data (OMIGA's, ComaDICE's, OMAR's) are in the ``paper`` observation mode."""
        return self.task(task).spec, {"observation_mode": "paper"}

    def download_sources(self) -> Mapping[tuple[str, str], tuple[SourceEntry, ...]]:
        from marlbench.suites.mamujoco.download import SOURCES

        return SOURCES


SUITE = MaMuJoCoSuite()

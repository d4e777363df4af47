"""Suites and their tasks, found by name.

Built-in suites register when their module is imported; an outside package can add one
through the entry-point group ``marlbench.suites`` (the entry point loads a ``Suite``
instance or a zero-argument callable returning one).
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from marlbench.data.store import Dataset
from marlbench.envs.base import VecEnv
from marlbench.errors import UnknownNameError
from marlbench.profiles import PROFILE_NAMES, Profile
from marlbench.spec import EnvSpec

BUILTIN_SUITE_MODULES = ("marlbench.envs.matrix", "marlbench.envs.mamujoco")
ENTRY_POINT_GROUP = "marlbench.suites"


@dataclass(frozen=True)
class TaskInfo:
    name: str
    spec: EnvSpec
    qualities: tuple[str, ...]
    description: str


class Suite(abc.ABC):
    """A family of tasks with their datasets, environments and training budgets."""

    name: ClassVar[str]
    description: ClassVar[str]
    requirements: ClassVar[str]
    profiles: ClassVar[dict[str, Profile]]
    generates_on_the_fly: ClassVar[bool] = False
    """Whether ``marlbench run`` may generate a missing dataset (only where that takes seconds)."""

    @abc.abstractmethod
    def tasks(self) -> dict[str, TaskInfo]:
        """Every task of the suite, by name."""

    def unavailable_reason(self) -> str | None:
        """None when the suite can run here, otherwise what is missing and how to get it."""
        return None

    @abc.abstractmethod
    def make_env(self, task: str, n_envs: int, **options: Any) -> VecEnv:
        """A vectorised environment of ``n_envs`` episodes.

        ``options`` are the dataset's ``env_options`` (its ``meta.json``), e.g. the
        observation mode, so evaluation sees what the data saw."""

    def can_generate(self, task: str, quality: str) -> bool:
        """By default: every listed quality of a suite that implements ``generate``."""
        return type(self).generate is not Suite.generate and quality in self.task(task).qualities

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
        """Write a behaviour dataset at ``root``; ``episodes`` overrides the default size and
        ``budget`` bounds the online environment steps of behaviour-policy training."""
        raise NotImplementedError(f"suite {self.name} has no dataset generator for {task}/{quality}")

    def task(self, name: str) -> TaskInfo:
        tasks = self.tasks()
        if name not in tasks:
            raise UnknownNameError(f"task of suite {self.name}", name, tasks)
        return tasks[name]

    def check_quality(self, task: str, quality: str) -> None:
        info = self.task(task)
        if quality not in info.qualities:
            raise UnknownNameError(f"quality of {self.name}/{task}", quality, info.qualities)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise UnknownNameError("profile", name, PROFILE_NAMES)
        return self.profiles[name]


_SUITES: dict[str, Suite] = {}
_discovered = False


def register_suite(suite: Suite) -> Suite:
    _SUITES[suite.name] = suite
    return suite


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in BUILTIN_SUITE_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded: Any = entry.load()
        register_suite(loaded if isinstance(loaded, Suite) else loaded())


def all_suites() -> dict[str, Suite]:
    _discover()
    return dict(_SUITES)


def get_suite(name: str) -> Suite:
    suites = all_suites()
    if name not in suites:
        raise UnknownNameError("suite", name, suites)
    return suites[name]

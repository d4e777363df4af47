"""Suites and their tasks, found by name: the :class:`Suite` interface and the registry.

A suite is one folder: every subpackage of ``marlbench.suites`` (``matrix/``,
``mamujoco/``) holds one suite's tasks, environment, data generator, importers and
download sources, and defines ``SUITE``, its :class:`Suite` instance. An outside package
adds one through the entry-point group ``marlbench.suites`` (the entry point loads a
``Suite`` instance or a zero-argument callable returning one, e.g. the class). Two
suites of one name are an error naming both providers.

Importing this module imports no suite, no torch and no simulator; discovery imports
each suite package, which in turn imports its environment, generator and importers only
when they are used (so ``marlbench suites`` lists a suite whose simulator is missing).
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from marlbench.errors import ConfigError, UnknownNameError
from marlbench.profiles import PROFILE_NAMES, Profile
from marlbench.spec import EnvSpec

if TYPE_CHECKING:
    from marlbench.data.download import SourceEntry
    from marlbench.data.importers.base import Importer
    from marlbench.data.store import Dataset
    from marlbench.envs.base import VecEnv

ENTRY_POINT_GROUP = "marlbench.suites"
SUITE_ATTRIBUTE = "SUITE"
"""The name under which a built-in suite package exposes its :class:`Suite` instance."""


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

    def importers(self) -> Mapping[str, Importer]:
        """The formats of published datasets this suite imports (``marlbench data import FORMAT``), by name."""
        return {}

    def import_target(self, task: str) -> tuple[EnvSpec, dict[str, Any]]:
        """What imported data of ``task`` must match: the spec, and the ``env_options`` recorded
        with it so that evaluation builds the environment the data came from. By default the
        task's spec and no options."""
        return self.task(task).spec, {}

    def download_sources(self) -> Mapping[tuple[str, str], tuple[SourceEntry, ...]]:
        """Published copies of this suite's datasets by ``(task, quality)``, for ``marlbench data download``."""
        return {}

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


class DuplicateSuiteError(ConfigError):
    """Two providers register a suite under one name."""


_SUITES: dict[str, Suite] = {}
_PROVIDERS: dict[str, str] = {}
_discovered = False


def register_suite(suite: Suite, provider: str | None = None) -> Suite:
    """Make ``suite`` available by its name. ``provider`` says where it comes from (default:
    the module of its class); a name already taken raises :class:`DuplicateSuiteError`
    naming both providers."""
    if not isinstance(suite, Suite):
        raise TypeError(f"a suite must be a marlbench.suites.Suite instance, got {suite!r} from {provider}")
    provider = provider or type(suite).__module__
    if suite.name in _SUITES:
        raise DuplicateSuiteError(
            f"suite '{suite.name}' is provided twice: by {_PROVIDERS[suite.name]} and by {provider}; "
            "uninstall or rename one of them"
        )
    _SUITES[suite.name] = suite
    _PROVIDERS[suite.name] = provider
    return suite


def builtin_suite_packages() -> list[str]:
    """Every subpackage of ``marlbench.suites``: one built-in suite each."""
    return [f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__) if module.ispkg]


def _entry_point_provider(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    package = f" of package {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point '{entry.name} = {entry.value}' ({ENTRY_POINT_GROUP}){package}"


def _discover() -> None:
    """Register the built-in suites, then the entry points'; on any error nothing of it stays
    registered, so every later call raises the same error."""
    global _discovered
    if _discovered:
        return
    before = dict(_SUITES), dict(_PROVIDERS)
    try:
        for package in builtin_suite_packages():
            module = importlib.import_module(package)
            if not hasattr(module, SUITE_ATTRIBUTE):
                raise TypeError(f"suite package {package} defines no {SUITE_ATTRIBUTE} (its Suite instance)")
            register_suite(getattr(module, SUITE_ATTRIBUTE), provider=f"{package} (built in)")
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            loaded: Any = entry.load()
            register_suite(loaded if isinstance(loaded, Suite) else loaded(), provider=_entry_point_provider(entry))
    except BaseException:
        for registry, saved in zip((_SUITES, _PROVIDERS), before, strict=True):
            registry.clear()
            registry.update(saved)
        raise
    _discovered = True


def all_suites() -> dict[str, Suite]:
    _discover()
    return dict(_SUITES)


def get_suite(name: str) -> Suite:
    suites = all_suites()
    if name not in suites:
        raise UnknownNameError("suite", name, suites)
    return suites[name]

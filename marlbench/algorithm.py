"""The algorithm interface, the registry, and typed configuration overrides.

An algorithm is a subclass of :class:`Algorithm` decorated with :func:`register`. The
registry imports every module of the ``algorithms`` package and every entry point of
the group ``marlbench.algorithms`` (an entry point may name a module or a class), so a
user's own package adds an algorithm without editing marlbench.

Configuration of one run is resolved in this order: the dataclass defaults, the
algorithm's settings for the kinds of problem the task's suite declares (``problem_overrides``:
its action space, a one-step game), the per-dataset table (``dataset_overrides``, glob patterns over
``suite/task/quality``), a YAML file, then ``--set key=value`` pairs. Last, the trainer
tells the algorithm the run's total steps (:meth:`Algorithm.resolve_schedule`): phase
lengths and schedules given as fractions of the run become absolute step counts, which
is what ``config.json`` records.
"""

from __future__ import annotations

import abc
import dataclasses
import fnmatch
import importlib
import pkgutil
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import yaml

from marlbench.data.sampler import Batch
from marlbench.errors import ConfigError, UnknownNameError
from marlbench.spec import ActionType, EnvSpec
from marlbench.step import ParamGroup, Phase, Stage, StepCore, TargetNet

ALGORITHMS_PACKAGE = "algorithms"
ENTRY_POINT_GROUP = "marlbench.algorithms"


@dataclass
class AlgorithmConfig:
    """Fields every algorithm has; subclasses add their own hyperparameters."""

    batch_size: int = 256


class Algorithm(abc.ABC):
    """One offline MARL method: decentralised actors, optionally centralised training.

    An algorithm declares its parameter groups (:meth:`param_groups`), its target networks
    (:meth:`targets`) and its losses, and the core (:class:`marlbench.step.StepCore`) takes
    the step: ``losses(batch, step)`` returns the paper's losses in equation order (and any
    value worth logging), and ``loss_groups`` names the groups each loss trains. Methods
    with several optimisation passes per step or with phases (pretraining, then the main
    loop) override :meth:`phases`. A method that truly needs its own step overrides
    :meth:`update`. ``act`` sees only each agent's own observation (its id is added by the
    networks).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    display_name: ClassVar[str]
    """The column heading in tables (the name the papers use)."""
    column_order: ClassVar[int] = 1000
    """Tables order algorithms by this, then by name (the ComaDICE paper's order for ours)."""
    action_types: ClassVar[tuple[ActionType, ...]] = ("discrete", "continuous")
    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    problem_overrides: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Settings by kind of problem (see :func:`problem_kinds`): ``{"one-step": {...}}``."""
    dataset_overrides: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Settings by dataset, glob patterns over ``suite/task/quality`` (the papers' tables)."""
    loss_groups: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Loss name -> the parameter groups it trains, for the default single-stage step."""

    def __init__(self, spec: EnvSpec, config: AlgorithmConfig, device: torch.device):
        self.spec = spec
        self.config = config
        self.device = device

    def param_groups(self) -> list[ParamGroup]:
        """The parameters the core optimises, in named groups with their learning rates."""
        raise NotImplementedError(f"{self.name} declares no parameter groups")

    def targets(self) -> list[TargetNet]:
        """Target networks and their Polyak rates (none unless overridden)."""
        return []

    def losses(self, batch: Batch, step: int) -> Mapping[str, torch.Tensor]:
        """The losses of one step by name (``loss_groups`` says which groups each trains),
        plus any other value to log (a non-finite logged value stops the run as diverged)."""
        raise NotImplementedError(f"{self.name} defines no losses")

    def phases(self) -> list[Phase]:
        """The training phases; by default one phase of one stage over :meth:`losses`."""
        return [Phase("update", 1, (Stage("update", self.losses, self.loss_groups),))]

    @property
    def step_core(self) -> StepCore:
        """The optimiser and step machinery, built on first use from the declarations."""
        core = self.__dict__.get("_step_core")
        if core is None:
            core = self.__dict__["_step_core"] = StepCore(self.name, self.param_groups(), self.targets(), self.phases())
        return core

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor | float]:
        """One training step on a minibatch; returns the logged values as detached 0-d
        tensors (no host sync on the hot path)."""
        return self.step_core.step(batch, step)

    @abc.abstractmethod
    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        """Decentralised actions ``[B, N]`` (int64) or ``[B, N, A]`` for observations ``[B, N, O]``."""

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        """Per-agent action probabilities ``[B, N, nA]`` of a discrete policy."""
        raise NotImplementedError(f"{self.name} does not expose action probabilities")

    @classmethod
    def resolve_schedule(cls, config: AlgorithmConfig, total_steps: int) -> AlgorithmConfig:
        """The config with every run-relative length made absolute for a run of ``total_steps``.

        Multi-phase methods override this; a value the user set explicitly stays as set."""
        return config

    def phase_starts(self) -> dict[str, int]:
        """First step of each training phase, by name."""
        return {phase.name: phase.start for phase in self.phases()}

    def _stateful_attributes(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer | torch.nn.Parameter]:
        state: dict[str, Any] = {
            key: value
            for key, value in vars(self).items()
            if isinstance(value, (torch.nn.Module, torch.optim.Optimizer, torch.nn.Parameter))
        }
        if self._declares_step():
            state["optimizer"] = self.step_core.optimizer
        return state

    def _declares_step(self) -> bool:
        return type(self).update is Algorithm.update

    def state_dict(self) -> dict[str, Any]:
        """Every network, learnable parameter and optimiser held as an attribute."""
        return {
            key: value.detach().clone() if isinstance(value, torch.nn.Parameter) else value.state_dict()
            for key, value in self._stateful_attributes().items()
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in self._stateful_attributes().items():
            if isinstance(value, torch.nn.Parameter):
                with torch.no_grad():
                    value.copy_(state[key])
            else:
                value.load_state_dict(state[key])


_ALGORITHMS: dict[str, type[Algorithm]] = {}
_discovered = False


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator that makes an algorithm available by its ``name``."""
    if not dataclasses.is_dataclass(cls.Config) or not issubclass(cls.Config, AlgorithmConfig):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass derived from AlgorithmConfig")
    if "display_name" not in vars(cls):
        cls.display_name = cls.name
    existing = _ALGORITHMS.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"algorithm name '{cls.name}' is taken by {existing.__module__}.{existing.__qualname__}")
    _ALGORITHMS[cls.name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module(ALGORITHMS_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{ALGORITHMS_PACKAGE}.{module.name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Algorithm):
            register(loaded)


def all_algorithms() -> dict[str, type[Algorithm]]:
    _discover()
    return dict(sorted(_ALGORITHMS.items()))


def get_algorithm(name: str) -> type[Algorithm]:
    algorithms = all_algorithms()
    if name not in algorithms:
        raise UnknownNameError("algorithm", name, algorithms)
    return algorithms[name]


def _coerce(owner: str, field: str, annotation: Any, value: Any) -> Any:
    """Check ``value`` against a config field's annotation; convert lists to tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{owner}: field '{field}': expected one of {list(args)}, found {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(owner, field, option, value)
            except ConfigError:
                continue
        raise ConfigError(f"{owner}: field '{field}': expected {annotation}, found {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{owner}: field '{field}': expected a list, found {value!r}")
        item_type = args[0] if args else Any
        return tuple(_coerce(owner, field, item_type, item) for item in value)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{owner}: field '{field}': expected true or false, found {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{owner}: field '{field}': expected an integer, found {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{owner}: field '{field}': expected a number, found {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{owner}: field '{field}': expected a string, found {value!r}")
        return value
    raise ConfigError(f"{owner}: field '{field}' has an unsupported type {annotation}")


def apply_overrides(config: AlgorithmConfig, overrides: Mapping[str, Any], owner: str) -> AlgorithmConfig:
    """A copy of ``config`` with ``overrides`` applied after checking names and types."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    checked = {}
    for key, value in overrides.items():
        if key not in names:
            raise UnknownNameError(f"config field of {owner}", key, names)
        checked[key] = _coerce(owner, key, hints[key], value)
    return dataclasses.replace(config, **checked)


def parse_set_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["lr=3e-4", "hidden=[64, 64]"]`` -> ``{"lr": 0.0003, "hidden": [64, 64]}`` (values read as YAML)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, found {pair!r}")
        value = yaml.safe_load(text)
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
            value = float(value)
        parsed[key.strip()] = value
    return parsed


def load_yaml_overrides(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the config file: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields, found {type(data).__name__}")
    return data


def problem_kinds(spec: EnvSpec) -> tuple[str, ...]:
    """The kinds of problem a task is, as declared by its suite: its action space
    (``discrete`` / ``continuous``) and ``one-step`` for a one-step game (episode limit 1)."""
    return (spec.action_type,) + (("one-step",) if spec.episode_limit == 1 else ())


def resolve_config(
    algorithm: type[Algorithm],
    suite: str,
    task: str,
    quality: str,
    user_overrides: Mapping[str, Any] | None = None,
    total_steps: int | None = None,
    spec: EnvSpec | None = None,
) -> AlgorithmConfig:
    """Defaults, then the settings for the task's kinds of problem (given its ``spec``), then
    the per-dataset table, then the user's overrides (YAML and ``--set``), then, given the
    run's ``total_steps``, the run-relative schedule made absolute."""
    config = algorithm.Config()
    for kind in problem_kinds(spec) if spec is not None else ():
        if kind in algorithm.problem_overrides:
            config = apply_overrides(config, algorithm.problem_overrides[kind], f"{algorithm.name} {kind} settings")
    instance = f"{suite}/{task}/{quality}"
    for pattern, values in algorithm.dataset_overrides.items():
        if fnmatch.fnmatchcase(instance, pattern):
            config = apply_overrides(config, values, f"{algorithm.name} dataset table ({pattern})")
    config = apply_overrides(config, user_overrides or {}, algorithm.name)
    if total_steps is not None:
        config = algorithm.resolve_schedule(config, total_steps)
    return config


def steps_of_run(owner: str, field: str, explicit: int | None, fraction: float, total_steps: int) -> int:
    """``explicit`` when set, else ``fraction`` of the run, rounded, at least 1 step, and
    leaving at least one step after it when the run is long enough for that."""
    if explicit is not None:
        return explicit
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"{owner}: field '{field}_fraction': expected a fraction in [0, 1], found {fraction!r}")
    return max(1, min(round(fraction * total_steps), total_steps - 1))


def require_resolved(owner: str, config: AlgorithmConfig, fields: Iterable[str]) -> None:
    """A clear error for a config whose run-relative fields were never made absolute."""
    missing = [name for name in fields if getattr(config, name) is None]
    if missing:
        raise ConfigError(
            f"{owner}: {', '.join(missing)} depend on the run's length; set them, or build the config with "
            "resolve_config(..., total_steps=N) (the trainer does)"
        )

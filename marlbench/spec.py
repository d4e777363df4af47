"""What an algorithm needs to know about a task: agents, dimensions, action space."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

ActionType = Literal["discrete", "continuous"]


@dataclass(frozen=True)
class EnvSpec:
    """Dimensions and action space of a cooperative multi-agent task.

    Discrete tasks set ``n_actions`` (per agent, with availability masks); continuous
    tasks set ``action_dim`` (per agent, in the box [action_low, action_high]).
    """

    n_agents: int
    obs_dim: int
    state_dim: int
    action_type: ActionType
    episode_limit: int
    n_actions: int | None = None
    action_dim: int | None = None
    action_low: float = -1.0
    action_high: float = 1.0
    has_wins: bool = False

    def __post_init__(self) -> None:
        if self.action_type == "discrete" and not self.n_actions:
            raise ValueError("a discrete EnvSpec needs n_actions")
        if self.action_type == "continuous" and not self.action_dim:
            raise ValueError("a continuous EnvSpec needs action_dim")
        if self.action_type not in ("discrete", "continuous"):
            raise ValueError(f"action_type must be 'discrete' or 'continuous', got {self.action_type!r}")

    @property
    def discrete(self) -> bool:
        return self.action_type == "discrete"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

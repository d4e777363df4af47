"""Training budgets. ``smoke`` takes seconds, ``standard`` is one fixed budget for every
algorithm on a suite, ``paper`` is the budget the papers used."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

PROFILE_NAMES = ("smoke", "standard", "paper")


@dataclass(frozen=True)
class Profile:
    steps: int
    eval_every: int
    eval_episodes: int
    final_eval_episodes: int
    log_every: int
    checkpoint_every: int
    batch_size: int | None = None
    """When set, replaces every algorithm's own batch size, so a budget is steps x batch; a
    batch size the user sets (``--set batch_size=N``) wins over it."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "batch_size" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"profile field {name} must be a positive integer, got {value!r}")

    def with_overrides(self, **overrides: Any) -> Profile:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)

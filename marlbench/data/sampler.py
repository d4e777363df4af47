"""Uniform, seeded minibatches of transitions straight from the memory maps."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from marlbench.data.store import Dataset


@dataclass
class Batch:
    """A minibatch of transitions ``r -> r+1`` plus a batch of initial states.

    Shapes: ``obs [B, N, O]``, ``state [B, S]``, ``actions [B, N]`` (int64) or
    ``[B, N, A]`` (float32), ``avail [B, N, nA]`` (bool; None on continuous tasks),
    ``reward [B]``, ``terminal [B]`` (float32, 1 on a true terminal); ``next_*`` are the
    same fields at row ``r+1``; ``initial_*`` come from episode starts, for the
    ``(1 - gamma) E[nu(s_0)]`` terms of the DICE family.
    """

    obs: torch.Tensor
    state: torch.Tensor
    actions: torch.Tensor
    avail: torch.Tensor | None
    reward: torch.Tensor
    terminal: torch.Tensor
    next_obs: torch.Tensor
    next_state: torch.Tensor
    next_avail: torch.Tensor | None
    initial_obs: torch.Tensor
    initial_state: torch.Tensor
    initial_avail: torch.Tensor | None

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = None if value is None else value.to(device, non_blocking=True)
        return Batch(**moved)


class Sampler:
    """Draws row indices uniformly over valid rows with its own seeded generator.

    Only the sampled rows are read from the memory maps (fancy indexing on sorted
    indices); no field is ever copied whole. The generator state is part of
    :meth:`state_dict` so an interrupted run resumes with the same batches.
    """

    def __init__(self, dataset: Dataset, seed: int, device: torch.device | str = "cpu"):
        self.dataset = dataset
        self.device = torch.device(device)
        self.valid_rows = np.flatnonzero(dataset.fields["valid"])
        self.episode_start = np.asarray(dataset.fields["episode_start"])
        self.rng = np.random.default_rng(seed)
        self.has_avail = "avail" in dataset.fields

    def _read(self, name: str, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.dataset.fields[name][rows])).to(self.device)

    def _read_split(self, name: str, rows: np.ndarray, parts: int) -> tuple[torch.Tensor, ...]:
        """One memmap read for several row sets laid end to end (r, r+1, episode starts)."""
        return torch.chunk(self._read(name, rows), parts)

    def sample(self, batch_size: int) -> Batch:
        rows = np.sort(self.valid_rows[self.rng.integers(0, self.valid_rows.shape[0], size=batch_size)])
        initial_rows = np.sort(self.episode_start[self.rng.integers(0, self.episode_start.shape[0], size=batch_size)])
        all_rows = np.concatenate([rows, rows + 1, initial_rows])
        obs, next_obs, initial_obs = self._read_split("obs", all_rows, 3)
        state, next_state, initial_state = self._read_split("state", all_rows, 3)
        avail = next_avail = initial_avail = None
        if self.has_avail:
            avail, next_avail, initial_avail = self._read_split("avail", all_rows, 3)
        return Batch(
            obs=obs,
            state=state,
            actions=self._read("actions", rows),
            avail=avail,
            reward=self._read("reward", rows),
            terminal=self._read("terminal", rows).float(),
            next_obs=next_obs,
            next_state=next_state,
            next_avail=next_avail,
            initial_obs=initial_obs,
            initial_state=initial_state,
            initial_avail=initial_avail,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

"""Pack padded per-episode arrays into the store's flat row layout.

Generators and importers hold episodes as padded arrays ``[E, T+1, ...]`` (the layout of
pymarl buffers and ComaDICE's npz files) with the number of transitions of each episode;
:func:`pack_episodes` lays them back to back with one final row per episode.
"""

from __future__ import annotations

import numpy as np


def pack_episodes(
    *,
    obs: np.ndarray,
    state: np.ndarray,
    actions: np.ndarray,
    reward: np.ndarray,
    terminated: np.ndarray,
    lengths: np.ndarray | None = None,
    avail: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Flatten padded episodes into store fields.

    Args:
        obs: ``[E, T+1, N, O]`` observations; row ``lengths[e]`` is the final observation.
        state: ``[E, T+1, S]`` global states.
        actions: ``[E, T, N]`` (discrete) or ``[E, T, N, A]`` (continuous); extra rows ignored.
        reward: ``[E, T]`` team reward of each transition.
        terminated: ``[E]`` whether the last transition of the episode ends in a true terminal.
        lengths: ``[E]`` transitions per episode (default: all ``T``).
        avail: ``[E, T+1, N, nA]`` available actions, discrete tasks only.
    """
    episodes, horizon = reward.shape
    lengths = np.full(episodes, horizon, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (episodes,) or (lengths < 1).any() or (lengths > horizon).any():
        raise ValueError(f"lengths must be {episodes} integers in [1, {horizon}], got {lengths}")
    keep = np.arange(horizon + 1)[None, :] <= lengths[:, None]
    final = np.arange(horizon + 1)[None, :] == lengths[:, None]
    padded_actions = np.zeros((episodes, horizon + 1) + actions.shape[2:], dtype=actions.dtype)
    padded_actions[:, :horizon] = actions[:, :horizon]
    padded_reward = np.zeros((episodes, horizon + 1), dtype=np.float32)
    padded_reward[:, :horizon] = reward
    terminal = (np.arange(horizon + 1)[None, :] == (lengths - 1)[:, None]) & np.asarray(terminated, bool)[:, None]
    fields = {
        "obs": obs[keep].astype(np.float32, copy=False),
        "state": state[keep].astype(np.float32, copy=False),
        "actions": padded_actions[keep],
        "reward": np.where(final, 0.0, padded_reward)[keep].astype(np.float32),
        "terminal": terminal[keep],
        "valid": ~final[keep],
        "episode_start": np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64),
    }
    if np.issubdtype(fields["actions"].dtype, np.integer):
        fields["actions"] = fields["actions"].astype(np.int64, copy=False)
    else:
        fields["actions"] = fields["actions"].astype(np.float32, copy=False)
    if avail is not None:
        fields["avail"] = avail[keep].astype(bool, copy=False)
    return fields

"""Dataset cards: what a dataset holds, in a few lines a person can read."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from marlbench.data.store import Dataset

MAX_JOINT_ACTIONS_IN_HISTOGRAM = 64


def joint_action_histogram(dataset: Dataset) -> dict[str, int] | None:
    """Counts of every joint action over valid rows, for small discrete games only."""
    spec = dataset.spec
    if not spec.discrete or spec.n_actions**spec.n_agents > MAX_JOINT_ACTIONS_IN_HISTOGRAM:
        return None
    actions = np.asarray(dataset.fields["actions"])[np.asarray(dataset.fields["valid"])]
    codes = np.ravel_multi_index(tuple(actions.T), (spec.n_actions,) * spec.n_agents)
    counts = np.bincount(codes, minlength=spec.n_actions**spec.n_agents)
    labels = [chr(ord("A") + a) for a in range(spec.n_actions)]
    return {
        "".join(labels[a] for a in joint): int(count)
        for joint, count in zip(itertools.product(range(spec.n_actions), repeat=spec.n_agents), counts, strict=True)
    }


def card(dataset: Dataset) -> dict[str, Any]:
    spec = dataset.spec
    starts = np.asarray(dataset.fields["episode_start"])
    lengths = np.diff(np.append(starts, dataset.n_rows)) - 1
    action_space = (
        f"discrete, {spec.n_actions} per agent" if spec.discrete else f"continuous, {spec.action_dim} per agent"
    )
    return {
        "path": str(dataset.root),
        "dataset": dataset.identity,
        "source": dataset.meta["source"],
        "agents": spec.n_agents,
        "obs_dim": spec.obs_dim,
        "state_dim": spec.state_dim,
        "action_space": action_space,
        "episode_limit": spec.episode_limit,
        **dataset.meta["statistics"],
        "episode_length_mean": float(lengths.mean()),
        "episode_length_min": int(lengths.min()),
        "episode_length_max": int(lengths.max()),
        "joint_action_histogram": joint_action_histogram(dataset),
    }


def format_card(info: dict[str, Any]) -> str:
    lines = [f"# {info['dataset']}", ""]
    for key, value in info.items():
        if key in ("dataset", "joint_action_histogram"):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"{key:22s} {value}")
    histogram = info["joint_action_histogram"]
    if histogram is not None:
        total = sum(histogram.values())
        lines += ["", "joint action   count   share"]
        lines += [f"{joint:14s} {count:6d}   {count / total:.3f}" for joint, count in histogram.items()]
    return "\n".join(lines)

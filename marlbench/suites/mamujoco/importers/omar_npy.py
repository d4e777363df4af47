"""OMAR's per-agent npy folders (``datasets/<env>/<quality>/seed_<k>_data/``).

Layout (REFERENCE.md, "Datasets in the wild"): for each agent i, ``obs_i.npy`` [T, O],
``acs_i.npy`` [T, A], ``rews_i.npy`` [T], ``next_obs_i.npy`` [T, O], ``dones_i.npy`` [T], and
optionally ``states_i.npy`` / ``next_states_i.npy`` [T, S]. Rows are independent
transitions (s, a, r, s', done) in collection order.

Episodes are rebuilt by chaining: row t + 1 continues row t's episode iff row t is not
done and ``next_obs[t] == obs[t + 1]`` exactly, for every agent. Where the chain breaks
the episode ends and its final row holds ``next_obs`` of its last transition. A done flag
is a true terminal unless the episode ran the full time limit. The team reward and the
done flag are agent 0's (identical across agents in the cooperative tasks). The global
state is ``states_0`` when present (or the agents' ``states_i`` concatenated when that
gives the state dim), else the agents' observations concatenated, which is the paper
mode's definition of the state.

OMAR's own MaMuJoCo data are HalfCheetah 2x3 with ``agent_obsk=0``; no task here has that
layout, so such a folder is refused with a dimension error. The importer is for tasks
whose agents and dimensions do match.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from marlbench.data.importers.base import (
    Converted,
    Importer,
    check_dtype,
    check_episode_limit,
    match_shape,
    rows_from_episodes,
    store_fields,
    time_limit_terminal,
)
from marlbench.errors import DatasetError
from marlbench.spec import EnvSpec
from marlbench.suites.mamujoco.tasks import EPISODE_LIMIT

PER_AGENT = ("obs", "acs", "rews", "next_obs", "dones")
OPTIONAL = ("states", "next_states")


class OmarNpyImporter(Importer):
    name = "omar-npy"
    description = "OMAR's per-agent npy folders (seed_<k>_data/ with obs_i, acs_i, rews_i, next_obs_i, dones_i)"
    options = ("episode_limit",)

    def convert(self, source: Path, spec: EnvSpec, *, episode_limit: int = EPISODE_LIMIT) -> Converted:
        source = Path(source)
        episode_limit = check_episode_limit(episode_limit)
        if not source.is_dir():
            raise DatasetError(source, self.name, "an OMAR seed_<k>_data folder", "no such folder")
        if not (source / "obs_0.npy").is_file():
            seeds = sorted(p.name for p in source.iterdir() if p.is_dir() and re.fullmatch(r"seed_\d+_data", p.name))
            found = f"seed folders {', '.join(seeds)}; pass one of them" if seeds else "no such file"
            raise DatasetError(source / "obs_0.npy", "obs_0", "OMAR's per-agent files (obs_0.npy, ...)", found)
        n = spec.n_agents
        present = 0
        while (source / f"obs_{present}.npy").is_file():
            present += 1
        if present != n:
            key = f"obs_{min(present, n)}"
            if present < n:
                expected, found = f"a file for each of {n} agents (obs_0 ... obs_{n - 1})", f"{present} agents"
            else:
                expected, found = f"no such file ({n} agents)", f"{present} agents (obs_0 ... obs_{present - 1})"
            raise DatasetError(source / f"{key}.npy", key, expected, found)

        arrays: dict[str, list[np.ndarray]] = {}
        sizes: dict[str, int] = {}
        o_dim, s_dim, a_dim = spec.obs_dim, spec.state_dim, spec.action_dim or 0
        for base, patterns in (
            ("obs", [("T", o_dim)]),
            ("next_obs", [("T", o_dim)]),
            ("acs", [("T", a_dim)]),
            ("rews", [("T",), ("T", 1)]),
            ("dones", [("T",), ("T", 1)]),
        ):
            arrays[base] = [self._load(source, f"{base}_{i}", patterns, sizes, spec) for i in range(n)]
        has_states = all((source / f"{base}_{i}.npy").is_file() for base in OPTIONAL for i in range(n))
        state_mode = "concat-obs"
        if has_states:
            state_patterns: list[tuple[int | str, ...]] = [("T", s_dim)]
            if s_dim % n == 0:
                state_patterns.append(("T", s_dim // n))
            for base in OPTIONAL:
                arrays[base] = [self._load(source, f"{base}_{i}", state_patterns, sizes, spec) for i in range(n)]
            widths = {a.shape[1] for base in OPTIONAL for a in arrays[base]}
            if len(widths) > 1:
                raise DatasetError(
                    source / "states_0.npy", "states_i", "the same width for every agent's states", sorted(widths)
                )
            state_mode = "states_0" if arrays["states"][0].shape[1] == s_dim else "concat-states"
        elif n * o_dim != s_dim:
            raise DatasetError(
                source / "states_0.npy",
                "states_0",
                f"shape [T, {s_dim}] (no concatenation of obs gives it)",
                "no such file",
            )
        total = sizes["T"]
        if total < 1:
            raise DatasetError(source / "obs_0.npy", "obs_0", "at least one row", "0 rows")

        obs = np.stack([np.asarray(a, dtype=np.float32) for a in arrays["obs"]], axis=1)
        next_obs = np.stack([np.asarray(a, dtype=np.float32) for a in arrays["next_obs"]], axis=1)
        actions = np.stack([np.asarray(a, dtype=np.float32) for a in arrays["acs"]], axis=1)
        rewards = [np.asarray(a, dtype=np.float32).reshape(total) for a in arrays["rews"]]
        dones = [np.asarray(a).reshape(total) != 0 for a in arrays["dones"]]
        if state_mode == "states_0":
            state, next_state = np.asarray(arrays["states"][0]), np.asarray(arrays["next_states"][0])
        elif state_mode == "concat-states":
            state = np.concatenate([np.asarray(a) for a in arrays["states"]], axis=1)
            next_state = np.concatenate([np.asarray(a) for a in arrays["next_states"]], axis=1)
        else:
            state, next_state = obs.reshape(total, -1), next_obs.reshape(total, -1)

        done = dones[0]
        continues = ~done[:-1] & (next_obs[:-1] == obs[1:]).all(axis=(1, 2))
        ends = np.append(~continues, True)
        last_rows = np.flatnonzero(ends)
        starts = np.concatenate([[0], last_rows[:-1] + 1]).astype(np.int64)
        steps = (last_rows - starts + 1).astype(np.int64)
        terminated = np.array(
            [time_limit_terminal(done[last], int(k), episode_limit) for last, k in zip(last_rows, steps, strict=True)],
            dtype=bool,
        )
        # Store rows: each episode's rows from obs, then one final row from next_obs.
        rows = rows_from_episodes(starts, steps, steps - 1)
        valid = np.ones(rows.shape[0], dtype=bool)
        valid[np.cumsum(steps + 1) - 1] = False
        fields = store_fields(
            obs=np.where(valid[:, None, None], obs[rows], next_obs[rows]),
            state=np.where(valid[:, None], state[rows], next_state[rows]),
            actions=actions[rows],
            reward=rewards[0][rows],
            transitions=steps,
            terminated=terminated,
        )

        conventions = [
            "episodes rebuilt by chaining rows: row t+1 continues row t iff dones_0[t] == 0 and next_obs_i[t] == "
            "obs_i[t+1] exactly for every agent; an episode's final row holds next_obs of its last transition",
            f"a done flag is a true terminal unless the episode ran the time limit ({episode_limit} steps)",
            "team reward = rews_0 and done = dones_0 (agent 0's)",
            {
                "states_0": "state = states_0 / next_states_0 (the global state)",
                "concat-states": "state = states_i / next_states_i concatenated agent by agent",
                "concat-obs": "no states_i files: state = the agents' observations concatenated (paper mode)",
            }[state_mode],
            f"{total} rows -> {starts.shape[0]} episodes, {int(terminated.sum())} terminals",
        ]
        reward_mismatch = sum(int(np.count_nonzero(r != rewards[0])) for r in rewards[1:])
        if reward_mismatch:
            conventions.append(f"the agents' rewards differ on {reward_mismatch} agent-rows; agent 0's are used")
        done_mismatch = sum(int(np.count_nonzero(d != done)) for d in dones[1:])
        if done_mismatch:
            conventions.append(f"the agents' done flags differ on {done_mismatch} agent-rows; agent 0's are used")
        files = [source / f"{base}_{i}.npy" for base in PER_AGENT + (OPTIONAL if has_states else ()) for i in range(n)]
        origin = {
            "obs": (source / "obs_0.npy", "obs_i / next_obs_i"),
            "state": (source / ("states_0.npy" if has_states else "obs_0.npy"), "states_i" if has_states else "obs_i"),
            "actions": (source / "acs_0.npy", "acs_i"),
            "reward": (source / "rews_0.npy", "rews_0"),
        }
        return Converted(fields=fields, files=files, conventions=conventions, origin=origin)

    @staticmethod
    def _load(
        folder: Path, key: str, patterns: list[tuple[int | str, ...]], sizes: dict[str, int], spec: EnvSpec
    ) -> np.ndarray:
        path = folder / f"{key}.npy"
        if not path.is_file():
            raise DatasetError(path, key, "the file to exist", "no such file")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise DatasetError(path, key, "a readable .npy file", f"an unreadable file: {error}") from error
        check_dtype(path, key, array.dtype, continuous_actions=key.startswith("acs_") and not spec.discrete)
        match_shape(path, key, array.shape, patterns, sizes)
        return array

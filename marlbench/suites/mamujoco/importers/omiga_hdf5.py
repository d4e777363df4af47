"""OMIGA's MaMuJoCo hdf5 files (``Hopper-v2-3x1-medium.hdf5`` and so on; ComaDICE used them too).

Layout (REFERENCE.md, "Datasets in the wild"; OMIGA's ``datasets/offline_dataset.py``):
flat, concatenated rows with keys ``o`` [T, n, O], ``s`` [T, n, O] (per-agent layout; the
global state is the agents' vectors concatenated), ``a`` [T, n, A], ``r`` [T] or [T, 1] and
``d`` [T, n] (column 0 used). The successor of row t is row t + 1 within an episode.

Episode boundaries. The file has no episode index, so boundaries come from the done
flags. OMIGA's own loader takes row t as a transition iff ``d[t] == 0`` and t < T - 1,
with mask ``1 - d[t + 1]``: the flag sits on a row holding the episode's final
observation ("final-row" layout, REFERENCE.md's inferred convention). A collector in the
style of the TRPO-in-MARL runners OMIGA builds on would instead flag the *last step* of
an episode and never store its final observation, the auto-reset observation of the next
episode following it (the D4RL layout, "last-step"). Both are supported:

* ``done_marks="final-row"``: a flagged row is an episode's final row; the transitions
  before it are the episode's. A block of ``episode_limit + 1`` rows is a full-length episode.
* ``done_marks="last-step"``: a flagged row is an episode's last step. If the episode
  ended before the time limit (a true terminal) its final observation is not in the
  file, and the final row repeats the last observation: the transition is terminal, so
  nothing is bootstrapped from it. If it ran the full limit, the final observation (which
  a time-limit transition does bootstrap from) is lost, so that last step's action and
  reward are dropped and its observation becomes the final row.
* ``done_marks="auto"`` (default): the block between consecutive flags has
  ``episode_limit + 1`` rows for a full-length episode in the final-row layout and
  ``episode_limit`` rows in the last-step layout. Any block of ``episode_limit + 1`` rows
  means final-row; otherwise two or more blocks of exactly ``episode_limit`` rows mean
  last-step; with no full-length episode to tell, final-row (OMIGA's loader) is used.
  The choice and its reason are recorded in the dataset's ``meta.json``.

Terminal or time limit: MaMuJoCo (like Gym's TimeLimit) raises done at the episode limit
too, so a flagged episode is a true terminal only if it has fewer than ``episode_limit``
(1000) transitions. Where the data carry no flag at a time limit, an episode that reaches
``episode_limit`` transitions without one is cut there (final-row: the row after its
``episode_limit``-th step is its final observation; last-step: its ``episode_limit``-th
row is). The file's last rows, if unflagged, end a time-limit-truncated episode whose
last row has no successor: its action and reward are dropped (as OMIGA's loader does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from marlbench.data.importers.base import (
    Converted,
    Importer,
    check_dtype,
    check_episode_limit,
    gather_rows,
    match_shape,
    require_keys,
    rows_from_episodes,
    store_fields,
)
from marlbench.errors import ConfigError, DatasetError, require
from marlbench.spec import EnvSpec
from marlbench.suites.mamujoco.tasks import EPISODE_LIMIT

DONE_MARKS = ("auto", "final-row", "last-step")
KEYS = ("o", "s", "a", "r", "d")


def detect_done_marks(flags: np.ndarray, episode_limit: int) -> tuple[str, str]:
    """(layout, reason) from the lengths of the blocks of rows between done flags."""
    flagged = np.flatnonzero(flags)
    blocks = np.diff(np.concatenate([[-1], flagged]))
    full_final_row = int(np.count_nonzero(blocks == episode_limit + 1))
    full_last_step = int(np.count_nonzero(blocks == episode_limit))
    if full_final_row:
        return "final-row", (
            f"{full_final_row} blocks of {episode_limit + 1} rows between done flags "
            f"({episode_limit} transitions + a final row)"
        )
    if full_last_step >= 2:
        return "last-step", (
            f"{full_last_step} blocks of exactly {episode_limit} rows between done flags and none of "
            f"{episode_limit + 1}: full-length episodes without their final observation"
        )
    return "final-row", "no full-length episode to tell the layouts apart; OMIGA's loader's convention"


def segment_episodes(
    flags: np.ndarray, episode_limit: int, done_marks: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Episodes of a flat file: (starts, transitions, final offsets, terminated, counts).

    Episode e covers source rows ``starts[e] .. starts[e] + transitions[e] - 1`` and its
    final row is source row ``starts[e] + final_offsets[e]``. ``counts`` tallies the
    special cases for the record (unmarked time limits, dropped rows, ...)."""
    total = int(flags.shape[0])
    starts: list[int] = []
    transitions: list[int] = []
    finals: list[int] = []
    terminated: list[bool] = []
    counts = {"unmarked_time_limits": 0, "marked_time_limits": 0, "dropped_rows": 0, "unflagged_tail_rows": 0}

    def episode(start: int, steps: int, final: int, terminal: bool) -> None:
        starts.append(start)
        transitions.append(steps)
        finals.append(final)
        terminated.append(terminal)

    flagged = np.flatnonzero(flags).tolist()
    blocks = []
    begin = 0
    for row in flagged:
        blocks.append((begin, row - begin + 1, True))
        begin = row + 1
    if begin < total:
        blocks.append((begin, total - begin, False))
        counts["unflagged_tail_rows"] = total - begin
    for begin, size, is_flagged in blocks:
        if done_marks == "final-row":
            while size - 1 > episode_limit:
                episode(begin, episode_limit, episode_limit, False)
                counts["unmarked_time_limits"] += 1
                begin += episode_limit + 1
                size -= episode_limit + 1
            if size < 2:
                counts["dropped_rows"] += size
                continue
            steps = size - 1
            if is_flagged and steps == episode_limit:
                counts["marked_time_limits"] += 1
            episode(begin, steps, steps, is_flagged and steps < episode_limit)
        else:
            while size > episode_limit:
                episode(begin, episode_limit - 1, episode_limit - 1, False)
                counts["unmarked_time_limits"] += 1
                begin += episode_limit
                size -= episode_limit
            if is_flagged and size < episode_limit:
                episode(begin, size, size - 1, True)
            elif size >= 2:
                if is_flagged:
                    counts["marked_time_limits"] += 1
                episode(begin, size - 1, size - 1, False)
            else:
                counts["dropped_rows"] += size
    return (
        np.asarray(starts, dtype=np.int64),
        np.asarray(transitions, dtype=np.int64),
        np.asarray(finals, dtype=np.int64),
        np.asarray(terminated, dtype=bool),
        counts,
    )


class OmigaHdf5Importer(Importer):
    name = "omiga-hdf5"
    description = "OMIGA's MaMuJoCo hdf5 files (keys s, o, a, r, d; flat rows), also used by ComaDICE"
    options = ("episode_limit", "done_marks")

    def convert(
        self,
        source: Path,
        spec: EnvSpec,
        *,
        episode_limit: int = EPISODE_LIMIT,
        done_marks: str = "auto",
    ) -> Converted:
        h5py = require("h5py", "mamujoco", "Importing OMIGA hdf5 files")
        episode_limit = check_episode_limit(episode_limit)
        if episode_limit < 2:
            raise ConfigError(f"episode_limit must be at least 2, got {episode_limit}")
        if done_marks not in DONE_MARKS:
            raise ConfigError(f"done_marks must be one of {', '.join(DONE_MARKS)}, got {done_marks!r}")
        source = Path(source)
        if not source.is_file():
            raise DatasetError(source, self.name, "an OMIGA hdf5 file", "no such file")
        try:
            handle = h5py.File(source, "r")
        except OSError as error:
            raise DatasetError(source, self.name, "a readable hdf5 file", f"an unreadable file: {error}") from error
        with handle:
            require_keys(source, list(handle.keys()), KEYS)
            for key in KEYS:
                item = handle[key]
                if not isinstance(item, h5py.Dataset):
                    kind = f"an hdf5 group with keys {sorted(item.keys())}" if isinstance(item, h5py.Group) else item
                    raise DatasetError(source, key, "an hdf5 dataset (an array)", kind)
                check_dtype(source, key, item.dtype, continuous_actions=key == "a" and not spec.discrete)
            return self._convert(handle, source, spec, episode_limit, done_marks)

    def _convert(self, f: Any, source: Path, spec: EnvSpec, episode_limit: int, done_marks: str) -> Converted:
        n, o_dim, s_dim, a_dim = spec.n_agents, spec.obs_dim, spec.state_dim, spec.action_dim or 0
        sizes: dict[str, int] = {}
        match_shape(source, "o", f["o"].shape, [("T", n, o_dim)], sizes)
        state_patterns: list[tuple[int | str, ...]] = []
        if n * o_dim == s_dim:
            state_patterns.append(("T", n, o_dim))
        state_patterns += [("T", n, s_dim), ("T", s_dim)]
        state_layout = match_shape(source, "s", f["s"].shape, state_patterns, sizes)
        match_shape(source, "a", f["a"].shape, [("T", n, a_dim)], sizes)
        match_shape(source, "r", f["r"].shape, [("T",), ("T", 1)], sizes)
        done_patterns: list[tuple[int | str, ...]] = [("T",), ("T", 1)] + ([("T", n)] if n > 1 else [])
        match_shape(source, "d", f["d"].shape, done_patterns, sizes)
        total = sizes["T"]
        if total < 2:
            raise DatasetError(source, "o", "at least 2 rows", f"{total} rows")

        conventions = [
            "observations from 'o' [T, n, O] (OMIGA's paper mode: the whole Gym observation plus a one-hot "
            "agent id, standardised per vector)",
        ]
        if state_patterns[state_layout] == ("T", n, o_dim):
            state_transform = _flatten_agents
            conventions.append("state = 's' [T, n, O] concatenated agent by agent (OMIGA's per-agent layout)")
        elif state_patterns[state_layout] == ("T", n, s_dim):
            state_transform = _first_agent
            conventions.append("state = agent 0's row of 's' [T, n, S] (a copy of the global state per agent)")
        else:
            state_transform = None
            conventions.append("state = 's' [T, S] as stored")

        done = np.asarray(f["d"][()])
        flags = (done.reshape(total, -1)[:, 0] != 0) if done.ndim > 1 else (done != 0)
        if done.ndim > 1 and done.shape[1] > 1:
            disagree = int(np.count_nonzero((done != 0).any(axis=1) != (done != 0).all(axis=1)))
            note = f"; the agents' flags disagree on {disagree} rows" if disagree else " (all agents agree)"
            conventions.append(f"done flags from column 0 of 'd' {list(done.shape)}{note}")
        else:
            conventions.append("done flags from 'd'")

        if done_marks == "auto":
            layout, reason = detect_done_marks(flags, episode_limit)
            conventions.append(f"done-flag layout '{layout}' detected: {reason}")
        else:
            layout = done_marks
            conventions.append(f"done-flag layout '{layout}' (chosen by the caller)")
        if layout == "final-row":
            conventions.append(
                "a done flag marks a row holding an episode's final observation (OMIGA's loader: row t is a "
                "transition iff d[t] == 0 and t < T-1, its successor row t+1)"
            )
        else:
            conventions.append(
                "a done flag marks an episode's last step; its final observation is not in the file (the next "
                "row is the next episode's first observation)"
            )
        starts, steps, finals, terminated, counts = segment_episodes(flags, episode_limit, layout)
        if starts.shape[0] == 0:
            raise DatasetError(source, "d", "at least one episode with one transition", f"{total} rows, none usable")
        conventions.append(
            f"a done flag is a true terminal only for episodes shorter than the time limit ({episode_limit} "
            f"transitions); MaMuJoCo also reports done at the limit ({counts['marked_time_limits']} flagged "
            "episodes ran the full limit and are stored as time-limit ends)"
        )
        if layout == "last-step":
            conventions.append(
                "terminal episodes: the final row repeats the last observation (a terminal transition never "
                "bootstraps from it); time-limit episodes: the last step's action and reward are dropped and "
                "its observation is the final row"
            )
        if counts["unmarked_time_limits"]:
            conventions.append(
                f"{counts['unmarked_time_limits']} episodes reached {episode_limit} transitions without a done "
                "flag and were cut there as time-limit ends (the data carry no marker for them)"
            )
        if counts["unflagged_tail_rows"]:
            conventions.append(
                f"the file's last {counts['unflagged_tail_rows']} rows carry no done flag: the episode is truncated "
                "and its last row, which has no successor, is the final row (its action and reward dropped)"
            )
        if counts["dropped_rows"]:
            conventions.append(f"{counts['dropped_rows']} rows that start no transition were dropped")
        conventions.append("rewards from 'r' as stored: true per-step rewards (no return-to-go)")

        rows = rows_from_episodes(starts, steps, finals)
        reward_all = np.asarray(f["r"][()], dtype=np.float32).reshape(total)
        fields = store_fields(
            obs=gather_rows(f["o"], rows),
            state=gather_rows(f["s"], rows, transform=state_transform),
            actions=gather_rows(f["a"], rows),
            reward=reward_all[rows],
            transitions=steps,
            terminated=terminated,
        )
        conventions.append(
            f"{total} source rows -> {starts.shape[0]} episodes, {int(steps.sum())} transitions, "
            f"{int(terminated.sum())} terminals"
        )
        origin = {"obs": (source, "o"), "state": (source, "s"), "actions": (source, "a"), "reward": (source, "r")}
        return Converted(fields=fields, files=[source], conventions=conventions, origin=origin)


def _flatten_agents(block: np.ndarray) -> np.ndarray:
    return block.reshape(block.shape[0], -1)


def _first_agent(block: np.ndarray) -> np.ndarray:
    return block[:, 0]

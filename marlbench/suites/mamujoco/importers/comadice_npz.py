"""ComaDICE's MaMuJoCo npz files (``offline_data/Hopper-v2-3x1-medium.npz`` and so on).

Layout (REFERENCE.md, "Datasets in the wild"): per-episode, padded arrays ``states``
(E, T+1, n, S) (or (E, T+1, S)), ``obs`` (E, T+1, n, O), ``actions`` (E, T+1, n, A) (the last
step unused; (E, T, n, A) is accepted too), ``rewards`` (E, T), ``dones`` (E, T) and
``actives`` (E, T) bool.

Conventions: an episode's length is its number of active steps, which must be a prefix
of the padded axis; ``obs[e, L]`` is its final observation. A done flag at the last active
step is a true terminal unless the episode ran the full time limit (MaMuJoCo reports done
at the limit too). ComaDICE divided MaMuJoCo actions by 4.0 before saving them; they are
multiplied back by ``action_scale`` (4.0) so actions are in the environment's [-1, 1] box.
The state: ``states[e, t]`` flattened agent by agent when it has the per-agent layout
(n x O = the task's state dim), agent 0's copy when each agent holds the whole state,
as stored when it is (E, T+1, S).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from marlbench.data.episodes import pack_episodes
from marlbench.data.importers.base import (
    Converted,
    Importer,
    check_dtype,
    check_episode_limit,
    match_shape,
    require_keys,
    time_limit_terminal,
)
from marlbench.errors import ConfigError, DatasetError
from marlbench.spec import EnvSpec
from marlbench.suites.mamujoco.tasks import EPISODE_LIMIT

KEYS = ("states", "obs", "actions", "rewards", "dones", "actives")
ACTION_SCALE = 4.0
"""ComaDICE stored MaMuJoCo actions divided by this."""


class ComaDiceNpzImporter(Importer):
    name = "comadice-npz"
    description = "ComaDICE's MaMuJoCo npz files (padded episodes: states, obs, actions, rewards, dones, actives)"
    options = ("action_scale", "episode_limit")

    def convert(
        self,
        source: Path,
        spec: EnvSpec,
        *,
        action_scale: float = ACTION_SCALE,
        episode_limit: int = EPISODE_LIMIT,
    ) -> Converted:
        source = Path(source)
        episode_limit = check_episode_limit(episode_limit)
        if isinstance(action_scale, bool) or not isinstance(action_scale, (int, float)) or not action_scale > 0:
            raise ConfigError(f"action_scale must be a positive number, got {action_scale!r}")
        if not source.is_file():
            raise DatasetError(source, self.name, "a ComaDICE npz file", "no such file")
        try:
            archive = np.load(source, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise DatasetError(source, self.name, "a readable npz file", f"an unreadable file: {error}") from error
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DatasetError(source, self.name, "an npz archive", "a single .npy array")
        with archive:
            require_keys(source, list(archive.files), KEYS)
            n, o_dim, s_dim, a_dim = spec.n_agents, spec.obs_dim, spec.state_dim, spec.action_dim or 0
            # Headers first (reading an npz member's header is cheap), then the data.
            shapes: dict[str, tuple[int, ...]] = {}
            for key in KEYS:
                shapes[key], dtype = _member_header(archive, key, source)
                check_dtype(source, key, dtype, continuous_actions=key == "actions" and not spec.discrete)
            sizes: dict[str, int] = {}
            match_shape(source, "rewards", shapes["rewards"], [("E", "T"), ("E", "T", 1)], sizes)
            match_shape(source, "obs", shapes["obs"], [("E", sizes["T"] + 1, n, o_dim)], sizes)
            state_patterns: list[tuple[int | str, ...]] = []
            if n * o_dim == s_dim:
                state_patterns.append(("E", sizes["T"] + 1, n, o_dim))
            state_patterns += [("E", sizes["T"] + 1, n, s_dim), ("E", sizes["T"] + 1, s_dim)]
            state_layout = match_shape(source, "states", shapes["states"], state_patterns, sizes)
            match_shape(
                source, "actions", shapes["actions"], [("E", sizes["T"] + 1, n, a_dim), ("E", "T", n, a_dim)], sizes
            )
            for key in ("dones", "actives"):
                match_shape(source, key, shapes[key], [("E", "T"), ("E", "T", 1)], sizes)
            episodes, horizon = sizes["E"], sizes["T"]
            if episodes < 1 or horizon < 1:
                raise DatasetError(
                    source, "rewards", "at least one episode with one step", f"shape {shapes['rewards']}"
                )

            actives = np.asarray(archive["actives"]).reshape(episodes, horizon) != 0
            dones = np.asarray(archive["dones"]).reshape(episodes, horizon) != 0
            lengths = actives.sum(axis=1)
            prefix = np.arange(horizon)[None, :] < lengths[:, None]
            if not np.array_equal(actives, prefix):
                bad = int(np.argmax((actives != prefix).any(axis=1)))
                raise DatasetError(
                    source,
                    "actives",
                    "the active steps of each episode to come first (a prefix of the padded axis)",
                    f"episode {bad}: active steps {np.flatnonzero(actives[bad]).tolist()[:10]}...",
                )
            early = dones & prefix & (np.arange(horizon)[None, :] < (lengths - 1)[:, None])
            if early.any():
                bad = int(np.argmax(early.any(axis=1)))
                raise DatasetError(
                    source,
                    "dones",
                    "a done flag only at an episode's last active step",
                    f"episode {bad}: done at step {int(np.argmax(early[bad]))} of {int(lengths[bad])} active steps",
                )
            keep = lengths > 0
            kept = np.flatnonzero(keep)
            if kept.size == 0:
                raise DatasetError(source, "actives", "at least one episode with an active step", "none")
            lengths = lengths[kept]
            last_done = dones[kept, lengths - 1]
            terminated = np.array(
                [
                    time_limit_terminal(d, int(length), episode_limit)
                    for d, length in zip(last_done, lengths, strict=True)
                ],
                dtype=bool,
            )
            obs = np.asarray(archive["obs"])[kept]
            states = np.asarray(archive["states"])[kept]
            if state_patterns[state_layout] == ("E", horizon + 1, n, o_dim):
                states = states.reshape(states.shape[0], horizon + 1, -1)
                state_note = "state = 'states' [E, T+1, n, O] concatenated agent by agent"
            elif state_patterns[state_layout] == ("E", horizon + 1, n, s_dim):
                states = states[:, :, 0]
                state_note = "state = agent 0's copy in 'states' [E, T+1, n, S]"
            else:
                state_note = "state = 'states' [E, T+1, S] as stored"
            actions = np.asarray(archive["actions"], dtype=np.float32)[kept][:, :horizon] * np.float32(action_scale)
            rewards = np.asarray(archive["rewards"], dtype=np.float32).reshape(episodes, horizon)[kept]

        fields = pack_episodes(
            obs=obs, state=states, actions=actions, reward=rewards, terminated=terminated, lengths=lengths
        )
        fields["actions"][~fields["valid"]] = 0.0  # final rows: padding, not an action
        conventions = [
            "episode length = number of active steps ('actives'); obs[e, L] is the final observation",
            f"a done flag at the last active step is a true terminal unless the episode ran the time limit "
            f"({episode_limit} steps): {int(terminated.sum())} terminals, "
            f"{int((last_done & ~terminated).sum())} done flags at the limit stored as time-limit ends",
            state_note,
            f"actions multiplied by {action_scale:g} (ComaDICE saved MaMuJoCo actions divided by {ACTION_SCALE:g})",
            "rewards from 'rewards' as stored: true per-step rewards",
            f"{episodes} padded episodes -> {kept.size} episodes, {int(lengths.sum())} transitions",
        ]
        if kept.size < episodes:
            conventions.append(f"{episodes - kept.size} episodes without an active step dropped")
        origin = {
            "obs": (source, "obs"),
            "state": (source, "states"),
            "actions": (source, "actions"),
            "reward": (source, "rewards"),
        }
        hint = (
            f"actions were multiplied by action_scale={action_scale:g}; if this file's actions are not divided "
            "by 4, import with action_scale=1.0"
        )
        return Converted(fields=fields, files=[source], conventions=conventions, origin=origin, action_hint=hint)


def _member_header(archive: np.lib.npyio.NpzFile, key: str, source: Path) -> tuple[tuple[int, ...], np.dtype]:
    """A member's shape and dtype from its .npy header, without reading the data."""
    try:
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    except (KeyError, ValueError, OSError) as error:
        raise DatasetError(source, key, "a readable .npy member", f"an unreadable member: {error}") from error
    return tuple(int(d) for d in shape), dtype

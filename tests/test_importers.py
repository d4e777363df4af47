"""Importers: small files built in each paper's exact layout, imported and checked row by row."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from marlbench.data.importers import import_dataset, importers
from marlbench.data.store import Dataset, sha256_file
from marlbench.errors import ConfigError, DatasetError, DatasetExistsError, UnknownNameError
from marlbench.suites.mamujoco.importers.omiga_hdf5 import detect_done_marks
from marlbench.suites.mamujoco.tasks import TASKS

h5py = pytest.importorskip("h5py")

HOPPER = TASKS["hopper"].paper_spec  # 3 agents, obs 14, state 42, action 1
LIMIT = 8  # a small episode limit stands in for MaMuJoCo's 1000
GARBAGE_ACTION = 5.0  # on rows that start no transition: must be ignored
GARBAGE_REWARD = 1000.0


@dataclass
class Episode:
    obs: np.ndarray  # [L+1, n, O]; row L is the final observation
    actions: np.ndarray  # [L, n, A]
    rewards: np.ndarray  # [L]

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def state(self) -> np.ndarray:  # the paper mode's state: the agents' vectors concatenated
        return self.obs.reshape(self.obs.shape[0], -1)


def make_episode(rng: np.random.Generator, length: int, n: int = 3, obs_dim: int = 14, act_dim: int = 1) -> Episode:
    return Episode(
        obs=rng.normal(size=(length + 1, n, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(length, n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=length).astype(np.float32),
    )


@dataclass
class Expected:
    """What the store should hold for one episode."""

    obs: np.ndarray  # [k+1, n, O]
    actions: np.ndarray  # [k, n, A]
    rewards: np.ndarray  # [k]
    terminal: bool


def assert_dataset(ds: Dataset, expected: list[Expected]) -> None:
    f = {k: np.asarray(v) for k, v in ds.fields.items()}
    lengths = [len(e.rewards) for e in expected]
    starts = np.concatenate([[0], np.cumsum(np.array(lengths) + 1)[:-1]])
    assert f["episode_start"].tolist() == starts.tolist()
    assert ds.n_rows == sum(lengths) + len(lengths)
    for start, exp in zip(starts, expected, strict=True):
        k = len(exp.rewards)
        np.testing.assert_array_equal(f["obs"][start : start + k + 1], exp.obs)
        np.testing.assert_array_equal(f["state"][start : start + k + 1], exp.obs.reshape(k + 1, -1))
        np.testing.assert_array_equal(f["actions"][start : start + k], exp.actions)
        np.testing.assert_array_equal(f["reward"][start : start + k], exp.rewards)
        assert f["valid"][start : start + k].all() and not f["valid"][start + k]
        assert f["reward"][start + k] == 0.0 and (f["actions"][start + k] == 0.0).all()
        terminal = np.zeros(k + 1, dtype=bool)
        terminal[k - 1] = exp.terminal
        np.testing.assert_array_equal(f["terminal"][start : start + k + 1], terminal)


def full(ep: Episode, terminal: bool) -> Expected:
    return Expected(ep.obs, ep.actions, ep.rewards, terminal)


# --------------------------------------------------------------------------------------
# OMIGA hdf5


def write_omiga(
    path: Path,
    blocks: list[tuple[Episode, bool]],
    *,
    layout: str = "final-row",
    state: str = "agents",
    reward_shape: str = "T1",
    done_columns: int = 3,
) -> None:
    """Flat OMIGA rows. ``blocks`` are (episode, flagged): in the final-row layout each
    episode's rows are its L+1 observations with the flag on the final one; in the
    last-step layout its L steps with the flag on the last one (the final observation is
    not written, as a D4RL-style collector would do)."""
    o, a, r, d = [], [], [], []
    for ep, flagged in blocks:
        if layout == "final-row":
            o.append(ep.obs)
            a.append(np.concatenate([ep.actions, np.full((1,) + ep.actions.shape[1:], GARBAGE_ACTION, np.float32)]))
            r.append(np.append(ep.rewards, GARBAGE_REWARD))
            flags = np.zeros(ep.length + 1)
        else:
            o.append(ep.obs[:-1])
            a.append(ep.actions)
            r.append(ep.rewards)
            flags = np.zeros(ep.length)
        flags[-1] = float(flagged)
        d.append(flags)
    obs = np.concatenate(o).astype(np.float32)
    rows, n = obs.shape[:2]
    with h5py.File(path, "w") as f:
        f["o"] = obs
        if state == "agents":
            f["s"] = obs
        elif state == "copies":
            f["s"] = np.repeat(obs.reshape(rows, 1, -1), n, axis=1)
        else:
            f["s"] = obs.reshape(rows, -1)
        f["a"] = np.concatenate(a).astype(np.float32)
        reward = np.concatenate(r).astype(np.float32)
        f["r"] = reward[:, None] if reward_shape == "T1" else reward
        f["d"] = np.repeat(np.concatenate(d)[:, None], done_columns, axis=1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def omiga_import(source: Path, root: Path, **options) -> Dataset:
    options.setdefault("episode_limit", LIMIT)
    return import_dataset("omiga-hdf5", source, root, suite="mamujoco", task="hopper", quality="medium", **options)


@pytest.mark.parametrize("state", ["agents", "copies", "flat"])
def test_omiga_final_row_layout_round_trip(tmp_path: Path, rng: np.random.Generator, state: str) -> None:
    e = [make_episode(rng, length) for length in (5, LIMIT, LIMIT, 3, 1, 4)]
    blocks = [(e[0], True), (e[1], True), (e[2], False), (e[3], True), (e[4], True), (e[5], False)]
    source = tmp_path / "Hopper-v2-3x1-medium.hdf5"
    write_omiga(source, blocks, state=state)
    ds = omiga_import(source, tmp_path / "data")
    assert_dataset(
        ds,
        [
            full(e[0], True),
            full(e[1], False),  # flagged after the full limit: a time-limit end, not a terminal
            full(e[2], False),  # no flag at the limit: cut there by counting
            full(e[3], True),
            full(e[4], True),
            full(e[5], False),  # the file's unflagged tail: its last row has no successor
        ],
    )
    source_record = ds.meta["source"]
    assert source_record["importer"] == "omiga-hdf5"
    assert source_record["files"] == [
        {"name": source.name, "sha256": sha256_file(source), "size": source.stat().st_size}
    ]
    conventions = "\n".join(source_record["conventions"])
    assert "'final-row' detected" in conventions
    assert "1 episodes reached 8 transitions without a done flag" in conventions
    assert ds.meta["env_options"] == {"observation_mode": "paper"}
    assert ds.spec == HOPPER


def test_omiga_last_step_layout_detected_and_converted(tmp_path: Path, rng: np.random.Generator) -> None:
    e = [make_episode(rng, length) for length in (5, LIMIT, LIMIT, LIMIT, 3, 4)]
    blocks = [(e[0], True), (e[1], True), (e[2], True), (e[3], False), (e[4], True), (e[5], False)]
    source = tmp_path / "Hopper-v2-3x1-expert.hdf5"
    write_omiga(source, blocks, layout="last-step", reward_shape="T", done_columns=1)

    def terminal_episode(ep: Episode) -> Expected:
        # the final observation is not in the file: the final row repeats the last one
        obs = np.concatenate([ep.obs[:-1], ep.obs[-2:-1]])
        return Expected(obs, ep.actions, ep.rewards, True)

    def cut(ep: Episode) -> Expected:
        # time limit: the last step's successor is lost, so that step becomes the final row
        return Expected(ep.obs[:-1], ep.actions[:-1], ep.rewards[:-1], False)

    expected = [terminal_episode(e[0]), cut(e[1]), cut(e[2]), cut(e[3]), terminal_episode(e[4]), cut(e[5])]
    ds = omiga_import(source, tmp_path / "data")
    assert_dataset(ds, expected)
    assert "'last-step' detected" in "\n".join(ds.meta["source"]["conventions"])

    forced = omiga_import(source, tmp_path / "forced", done_marks="last-step")
    assert_dataset(forced, expected)
    assert "chosen by the caller" in "\n".join(forced.meta["source"]["conventions"])


def test_detect_done_marks() -> None:
    def flags(*blocks: int) -> np.ndarray:
        out = np.zeros(sum(blocks), dtype=bool)
        out[np.cumsum(blocks) - 1] = True
        return out

    assert detect_done_marks(flags(5, 9, 8, 8), 8)[0] == "final-row"
    assert detect_done_marks(flags(5, 8, 8, 3), 8)[0] == "last-step"
    assert detect_done_marks(flags(5, 8, 3), 8)[0] == "final-row"  # one coincidence is no evidence
    layout, reason = detect_done_marks(flags(5, 3), 8)
    assert layout == "final-row" and "no full-length episode" in reason


def test_omiga_dimension_mismatch_names_key_and_shapes(tmp_path: Path, rng: np.random.Generator) -> None:
    wrong = [(make_episode(rng, 4, obs_dim=13), True), (make_episode(rng, 3, obs_dim=13), True)]
    source = tmp_path / "Hopper-v2-3x1-medium.hdf5"
    write_omiga(source, wrong)
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as caught:
        omiga_import(source, root)
    error = caught.value
    assert error.path == source and error.field == "o"
    assert "[T, 3, 14]" in str(error.expected) and "[9, 3, 13]" in str(error.found)
    assert str(source) in str(error) and "'o'" in str(error)
    assert not root.exists() and list(tmp_path.iterdir()) == [source]

    good = tmp_path / "hopper.hdf5"
    write_omiga(good, [(make_episode(rng, 4), True)])
    with pytest.raises(DatasetError) as caught:  # a Hopper file imported as Ant
        import_dataset("omiga-hdf5", good, root, suite="mamujoco", task="ant", quality="medium")
    assert caught.value.field == "o" and "[T, 2, 113]" in str(caught.value.expected)
    assert not root.exists()


def test_omiga_missing_key_and_length_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    source = tmp_path / "x.hdf5"
    write_omiga(source, [(make_episode(rng, 4), True)])
    with h5py.File(source, "a") as f:
        del f["r"]
        f["r"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(DatasetError) as caught:
        omiga_import(source, tmp_path / "data")
    assert caught.value.field == "r" and "T=5" in str(caught.value.expected)
    with h5py.File(source, "a") as f:
        del f["r"]
    with pytest.raises(DatasetError, match="'r'.*the key to be present"):
        omiga_import(source, tmp_path / "data")


def test_omiga_actions_out_of_range_rejected_or_clipped(tmp_path: Path, rng: np.random.Generator) -> None:
    e = [make_episode(rng, length) for length in (5, 4)]
    e[0].actions[[1, 3], 2, 0] = 1.5
    e[1].actions[0, 0, 0] = -1.25
    source = tmp_path / "x.hdf5"
    write_omiga(source, [(e[0], True), (e[1], True)])  # final rows hold GARBAGE_ACTION: not counted
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as caught:
        omiga_import(source, root)
    assert caught.value.field == "a" and caught.value.path == source
    assert "3 of 9 transition rows" in str(caught.value) and "clip_actions" in str(caught.value)
    assert not root.exists()

    ds = omiga_import(source, root, clip_actions=True)
    actions = np.asarray(ds.fields["actions"])
    assert actions.max() == 1.0 and actions.min() == -1.0
    assert actions[1, 2, 0] == 1.0 and actions[6, 0, 0] == -1.0
    assert ds.meta["source"]["clip_actions"] is True
    assert any("3 transition rows" in c and "clipped" in c for c in ds.meta["source"]["conventions"])


def test_unknown_format_option_and_existing_root(tmp_path: Path, rng: np.random.Generator) -> None:
    source = tmp_path / "x.hdf5"
    write_omiga(source, [(make_episode(rng, 4), True)])
    with pytest.raises(UnknownNameError, match="unknown import format of suite mamujoco 'omiga-h5'.*omiga-hdf5"):
        import_dataset("omiga-h5", source, tmp_path / "d", suite="mamujoco", task="hopper", quality="medium")
    with pytest.raises(ConfigError, match="no option 'action_scale'"):
        omiga_import(source, tmp_path / "d", action_scale=2.0)
    with pytest.raises(UnknownNameError, match="quality"):
        import_dataset("omiga-hdf5", source, tmp_path / "d", suite="mamujoco", task="hopper", quality="good")
    root = tmp_path / "d"
    omiga_import(source, root)
    with pytest.raises(FileExistsError):
        omiga_import(source, root)
    assert omiga_import(source, root, overwrite=True).n_episodes == 1
    assert set(importers("mamujoco")) == {"omiga-hdf5", "comadice-npz", "omar-npy"}
    with pytest.raises(UnknownNameError, match=r"import format of suite matrix 'omiga-hdf5'.*known: none"):
        import_dataset("omiga-hdf5", source, tmp_path / "m", suite="matrix", task="xor", quality="ab")


def replace_key(source: Path, key: str, value) -> None:
    with h5py.File(source, "a") as f:
        del f[key]
        if isinstance(value, str):
            f.create_group(key).create_dataset("inner", data=np.zeros(3))
        else:
            f[key] = value


@pytest.mark.parametrize(
    ("key", "value", "expected", "found"),
    [
        ("o", "group", "an hdf5 dataset", "an hdf5 group with keys ['inner']"),
        ("r", "strings", "real numbers", "dtype |S3"),
        ("s", "complex", "real numbers", "dtype complex64"),
        ("a", "complex", "floating-point actions", "dtype complex64"),
        ("a", "integers", "floating-point actions", "dtype int64"),
    ],
)
def test_omiga_field_that_is_a_group_or_not_real_numbers_is_refused(
    tmp_path: Path, rng: np.random.Generator, key: str, value: str, expected: str, found: str
) -> None:
    source = tmp_path / "x.hdf5"
    write_omiga(source, [(make_episode(rng, 4), True), (make_episode(rng, 3), False)])
    with h5py.File(source, "r") as f:
        original = f[key][()]
    converted = {
        "group": "group",
        "strings": np.full(original.shape, b"1.5"),
        "complex": original.astype(np.complex64) + 1j,
        "integers": np.round(original).astype(np.int64),
    }[value]
    replace_key(source, key, converted)
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as caught:
        omiga_import(source, root)
    error = caught.value
    assert (error.path, error.field) == (source, key)
    assert expected in str(error.expected) and found in str(error.found)
    assert str(source) in str(error) and not root.exists()


def test_import_into_a_leftover_directory_says_what_it_holds_and_the_advice_works(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    source = tmp_path / "x.hdf5"
    write_omiga(source, [(make_episode(rng, 4), True)])
    root = tmp_path / "d"
    root.mkdir()
    (root / "obs.npy").write_bytes(b"half a copy")
    with pytest.raises(DatasetExistsError) as caught:
        omiga_import(source, root)
    message = str(caught.value)
    assert "without meta.json holding 1 entries (obs.npy)" in message and "overwrite=True" in message
    assert omiga_import(source, root, overwrite=True).n_episodes == 1  # the first suggested fix
    (root / "meta.json").unlink()
    with pytest.raises(DatasetExistsError) as caught:
        omiga_import(source, root)
    subprocess.run(shlex.split(re.search(r"remove it with: (rm -r \S+),", str(caught.value)).group(1)), check=True)
    assert omiga_import(source, root).n_episodes == 1  # the second one


def test_import_into_an_empty_directory_needs_no_overwrite(tmp_path: Path, rng: np.random.Generator) -> None:
    source = tmp_path / "x.hdf5"
    write_omiga(source, [(make_episode(rng, 4), True)])
    (tmp_path / "d").mkdir()
    assert omiga_import(source, tmp_path / "d").n_episodes == 1


# --------------------------------------------------------------------------------------
# ComaDICE npz


def write_comadice(
    path: Path,
    episodes: list[Episode],
    dones: list[bool],
    horizon: int,
    *,
    divide: float = 4.0,
    state: str = "agents",
    actions_steps: str = "T+1",
) -> None:
    count = len(episodes)
    n, o_dim = episodes[0].obs.shape[1:]
    a_dim = episodes[0].actions.shape[2]
    obs = np.full((count, horizon + 1, n, o_dim), np.nan, dtype=np.float32)  # padding is garbage
    actions = np.full((count, horizon + 1, n, a_dim), np.nan, dtype=np.float32)
    rewards = np.full((count, horizon), np.nan, dtype=np.float32)
    done = np.zeros((count, horizon), dtype=np.float32)
    actives = np.zeros((count, horizon), dtype=bool)
    for i, (ep, flag) in enumerate(zip(episodes, dones, strict=True)):
        length = ep.length
        obs[i, : length + 1] = ep.obs
        actions[i, :length] = ep.actions / divide
        rewards[i, :length] = ep.rewards
        actives[i, :length] = True
        if length:
            done[i, length - 1] = float(flag)
    if state == "agents":
        states = obs.copy()
    else:
        states = obs.reshape(count, horizon + 1, -1)
    np.savez(
        path,
        states=states,
        obs=obs,
        actions=actions if actions_steps == "T+1" else actions[:, :horizon],
        rewards=rewards,
        dones=done,
        actives=actives,
    )


def comadice_import(source: Path, root: Path, **options) -> Dataset:
    options.setdefault("episode_limit", LIMIT)
    return import_dataset("comadice-npz", source, root, suite="mamujoco", task="hopper", quality="medium", **options)


@pytest.mark.parametrize(("state", "actions_steps"), [("agents", "T+1"), ("flat", "T")])
def test_comadice_round_trip_and_action_rescale(
    tmp_path: Path, rng: np.random.Generator, state: str, actions_steps: str
) -> None:
    e = [make_episode(rng, length) for length in (LIMIT, 5, 3, 0, 2)]
    dones = [True, True, False, False, True]
    source = tmp_path / "Hopper-v2-3x1-medium.npz"
    write_comadice(source, e, dones, LIMIT, state=state, actions_steps=actions_steps)
    ds = comadice_import(source, tmp_path / "data")
    # done at the full limit is a time limit; the empty episode is dropped; actions are x4
    assert_dataset(ds, [full(e[0], False), full(e[1], True), full(e[2], False), full(e[4], True)])
    record = ds.meta["source"]
    assert record["importer"] == "comadice-npz"
    assert record["files"][0]["sha256"] == sha256_file(source)
    conventions = "\n".join(record["conventions"])
    assert "actions multiplied by 4" in conventions and "1 episodes without an active step dropped" in conventions


def test_comadice_undivided_actions_need_action_scale_one(tmp_path: Path, rng: np.random.Generator) -> None:
    e = [make_episode(rng, length) for length in (5, 3)]
    source = tmp_path / "x.npz"
    write_comadice(source, e, [True, False], LIMIT, divide=1.0)
    with pytest.raises(DatasetError) as caught:
        comadice_import(source, tmp_path / "data")
    assert caught.value.field == "actions" and "action_scale=1.0" in str(caught.value)
    assert not (tmp_path / "data").exists()
    ds = comadice_import(source, tmp_path / "data", action_scale=1.0)
    assert_dataset(ds, [full(e[0], True), full(e[1], False)])
    assert any("multiplied by 1" in c for c in ds.meta["source"]["conventions"])


def test_comadice_dimension_and_structure_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    source = tmp_path / "x.npz"
    write_comadice(source, [make_episode(rng, 3, obs_dim=12)], [True], LIMIT)
    with pytest.raises(DatasetError) as caught:
        comadice_import(source, tmp_path / "data")
    assert caught.value.field == "obs" and caught.value.path == source
    assert "[E=1, 9, 3, 14]" in str(caught.value.expected) and "[1, 9, 3, 12]" in str(caught.value.found)

    write_comadice(source, [make_episode(rng, 3)], [True], LIMIT)
    with np.load(source) as archive:
        arrays = dict(archive)
    arrays["actives"][0] = [False, True, True, True, False, False, False, False]
    np.savez(source, **arrays)
    with pytest.raises(DatasetError, match="'actives'.*prefix"):
        comadice_import(source, tmp_path / "data")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("key", "dtype", "expected"),
    [("actions", np.int64, "floating-point actions"), ("obs", np.complex64, "real numbers"), ("rewards", "U3", "real")],
)
def test_comadice_integer_actions_and_non_real_arrays_are_refused(
    tmp_path: Path, rng: np.random.Generator, key: str, dtype, expected: str
) -> None:
    source = tmp_path / "x.npz"
    write_comadice(source, [make_episode(rng, 3), make_episode(rng, 2)], [True, False], horizon=4)
    with np.load(source) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays[key] = np.nan_to_num(arrays[key]).astype(dtype)
    np.savez(source, **arrays)
    with pytest.raises(DatasetError) as caught:
        comadice_import(source, tmp_path / "data")
    error = caught.value
    assert (error.path, error.field) == (source, key)
    assert expected in str(error.expected) and f"dtype {np.dtype(dtype)}" == error.found
    assert not (tmp_path / "data").exists()


# --------------------------------------------------------------------------------------
# OMAR per-agent npy


def write_omar(folder: Path, episodes: list[Episode], dones: list[bool], *, states: bool) -> None:
    folder.mkdir(parents=True)
    n = episodes[0].obs.shape[1]
    obs = np.concatenate([ep.obs[:-1] for ep in episodes])
    next_obs = np.concatenate([ep.obs[1:] for ep in episodes])
    acs = np.concatenate([ep.actions for ep in episodes])
    rews = np.concatenate([ep.rewards for ep in episodes])
    done = np.concatenate(
        [
            np.arange(ep.length) == ep.length - 1 if d else np.zeros(ep.length, bool)
            for ep, d in zip(episodes, dones, strict=True)
        ]
    )
    state = np.concatenate([ep.state[:-1] for ep in episodes])
    next_state = np.concatenate([ep.state[1:] for ep in episodes])
    for i in range(n):
        np.save(folder / f"obs_{i}.npy", obs[:, i])
        np.save(folder / f"next_obs_{i}.npy", next_obs[:, i])
        np.save(folder / f"acs_{i}.npy", acs[:, i])
        np.save(folder / f"rews_{i}.npy", rews)
        np.save(folder / f"dones_{i}.npy", done.astype(np.float32))
        if states:
            np.save(folder / f"states_{i}.npy", state)
            np.save(folder / f"next_states_{i}.npy", next_state)


@pytest.mark.parametrize("states", [True, False])
def test_omar_chains_rows_into_episodes(tmp_path: Path, rng: np.random.Generator, states: bool) -> None:
    e = [make_episode(rng, length) for length in (4, 6, 3, 5)]
    folder = tmp_path / "hopper" / "medium" / "seed_0_data"
    write_omar(folder, e, [True, False, True, False], states=states)
    ds = import_dataset("omar-npy", folder, tmp_path / "data", suite="mamujoco", task="hopper", quality="medium")
    assert_dataset(ds, [full(e[0], True), full(e[1], False), full(e[2], True), full(e[3], False)])
    record = ds.meta["source"]
    assert record["importer"] == "omar-npy"
    names = {f["name"]: f["sha256"] for f in record["files"]}
    assert names["obs_0.npy"] == sha256_file(folder / "obs_0.npy")
    assert ("states_2.npy" in names) == states and len(names) == (21 if states else 15)
    assert any("chaining" in c for c in record["conventions"])


def test_omar_halfcheetah_2x3_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    # OMAR's MaMuJoCo data: HalfCheetah 2x3, agent_obsk 0 (two agents of three joints each)
    folder = tmp_path / "seed_0_data"
    write_omar(folder, [make_episode(rng, 4, n=2, obs_dim=8, act_dim=3)], [False], states=False)
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as caught:
        import_dataset("omar-npy", folder, root, suite="mamujoco", task="halfcheetah", quality="medium")
    error = caught.value
    assert error.field == "obs_2" and "6 agents" in str(error.expected) and "2 agents" in str(error.found)
    assert not root.exists()

    three = tmp_path / "three" / "seed_0_data"
    write_omar(three, [make_episode(rng, 4, obs_dim=13)], [False], states=False)
    with pytest.raises(DatasetError) as caught:
        import_dataset("omar-npy", three, root, suite="mamujoco", task="hopper", quality="medium")
    assert caught.value.field == "obs_0" and "[T, 14]" in str(caught.value.expected)
    assert "[4, 13]" in str(caught.value.found)
    with pytest.raises(DatasetError, match="seed_0_data; pass one of them"):
        import_dataset("omar-npy", three.parent, root, suite="mamujoco", task="hopper", quality="medium")
    assert not root.exists()


def test_omar_integer_actions_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "seed_0_data"
    write_omar(folder, [make_episode(rng, 4), make_episode(rng, 3)], [True, False], states=False)
    np.save(folder / "acs_1.npy", np.sign(np.load(folder / "acs_1.npy")).astype(np.int32))
    with pytest.raises(DatasetError) as caught:
        import_dataset("omar-npy", folder, tmp_path / "data", suite="mamujoco", task="hopper", quality="medium")
    error = caught.value
    assert (error.path, error.field) == (folder / "acs_1.npy", "acs_1")
    assert "floating-point actions" in str(error.expected) and error.found == "dtype int32"
    assert "discrete action indices" in str(error)

"""The dataset store: round trips, validation errors, atomic writes, and episode packing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from marlbench.data.episodes import pack_episodes
from marlbench.data.store import CACHE_FILE, FORMAT_VERSION, Dataset, write_dataset
from marlbench.errors import DatasetError, DatasetWriteError
from marlbench.spec import EnvSpec

DISCRETE = EnvSpec(n_agents=2, obs_dim=3, state_dim=4, action_type="discrete", n_actions=3, episode_limit=5)
CONTINUOUS = EnvSpec(n_agents=2, obs_dim=3, state_dim=4, action_type="continuous", action_dim=2, episode_limit=5)
LENGTHS = np.array([5, 2, 3, 1])
TERMINATED = np.array([True, False, True, False])
HORIZON = 5


def padded_episodes(spec: EnvSpec, lengths: np.ndarray = LENGTHS, terminated: np.ndarray = TERMINATED) -> dict:
    """Padded ``[E, T+1, ...]`` episodes whose obs/state encode (episode, t); padding is NaN garbage."""
    episodes, n = len(lengths), spec.n_agents
    e = np.arange(episodes)[:, None]
    t = np.arange(HORIZON + 1)[None, :]
    beyond = t > lengths[:, None]  # rows after the final observation: never stored
    obs = np.zeros((episodes, HORIZON + 1, n, spec.obs_dim), dtype=np.float32)
    obs[..., 0] = e[..., None]
    obs[..., 1] = t[..., None]
    obs[..., 2] = np.arange(n)[None, None, :]
    obs[beyond] = np.nan
    state = np.stack(np.broadcast_arrays(e, t, 100 * e + t, np.ones_like(e * t)), axis=-1).astype(np.float32)
    state[beyond] = np.nan
    reward = (0.25 * t[:, :HORIZON] - e + 0.5).astype(np.float32)
    reward[t[:, :HORIZON] >= lengths[:, None]] = np.nan  # never a transition's reward
    out = {
        "obs": obs,
        "state": state,
        "reward": reward,
        "terminated": terminated,
        "lengths": lengths,
    }
    if spec.discrete:
        actions = (e[..., None] + t[:, :HORIZON, None] + np.arange(n)) % spec.n_actions
        out["actions"] = actions.astype(np.int64)
        taken = np.concatenate([actions, actions[:, -1:]], axis=1)
        avail = np.ones((episodes, HORIZON + 1, n, spec.n_actions), dtype=bool)
        np.put_along_axis(avail, ((taken + 1) % spec.n_actions)[..., None], False, axis=-1)
        out["avail"] = avail
    else:
        base = e[..., None, None] + t[:, :HORIZON, None, None] + np.arange(n)[:, None] + np.arange(2)
        out["actions"] = np.sin(base).astype(np.float32)
    return out


def hand_returns(lengths: np.ndarray = LENGTHS) -> np.ndarray:
    return np.array([sum(0.25 * t - e + 0.5 for t in range(length)) for e, length in enumerate(lengths)])


def build_fields(spec: EnvSpec) -> dict[str, np.ndarray]:
    return pack_episodes(**padded_episodes(spec))


def write(root: Path, spec: EnvSpec = DISCRETE, fields: dict | None = None, **kwargs) -> Dataset:
    return write_dataset(
        root,
        build_fields(spec) if fields is None else fields,
        spec=spec,
        suite="toy",
        task="task",
        quality="q",
        source={"generator": "tests", "config": {"seed": 1}},
        **kwargs,
    )


def assert_dataset_error(error: DatasetError, field: str, file: str, expected: str, found: str) -> None:
    message = str(error)
    assert error.field == field
    assert error.path.name == file
    assert file in message
    assert f"'{field}'" in message
    assert str(error.expected) in message and expected in str(error.expected)
    assert str(error.found) in message and found in str(error.found)


def rewrite(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_round_trip(tmp_path: Path, spec: EnvSpec) -> None:
    fields = build_fields(spec)
    root = tmp_path / "ds"
    written = write(root, spec, fields)
    dataset = Dataset.open(root)
    expected_names = {"obs", "state", "actions", "reward", "terminal", "valid", "episode_start"}
    if spec.discrete:
        expected_names.add("avail")
    assert set(dataset.fields) == expected_names == set(fields)
    for name, array in fields.items():
        loaded = dataset.fields[name]
        assert isinstance(loaded, np.memmap), name
        assert not loaded.flags.writeable, name
        assert loaded.dtype == array.dtype and loaded.shape == array.shape, name
        np.testing.assert_array_equal(np.asarray(loaded), array, err_msg=name)
        np.testing.assert_array_equal(np.asarray(written.fields[name]), array, err_msg=name)
    with pytest.raises(ValueError):
        dataset.fields["reward"][0] = 1.0

    meta = json.loads((root / "meta.json").read_text())
    assert meta == dataset.meta
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert (meta["suite"], meta["task"], meta["quality"]) == ("toy", "task", "q")
    assert dataset.identity == "toy/task/q"
    assert meta["spec"] == spec.to_dict()
    assert dataset.spec == spec
    assert meta["source"] == {"generator": "tests", "config": {"seed": 1}}
    returns = hand_returns()
    stats = meta["statistics"]
    assert stats["episodes"] == len(LENGTHS) == dataset.n_episodes
    assert stats["transitions"] == LENGTHS.sum() == dataset.n_transitions
    assert stats["terminals"] == TERMINATED.sum()
    assert stats["return_mean"] == pytest.approx(returns.mean())
    assert stats["return_std"] == pytest.approx(returns.std())
    assert stats["return_min"] == pytest.approx(returns.min())
    assert stats["return_max"] == pytest.approx(returns.max())
    np.testing.assert_allclose(dataset.episode_returns(), returns)
    assert dataset.n_rows == (LENGTHS + 1).sum()

    assert set(meta["files"]) == expected_names
    for name, record in meta["files"].items():
        path = root / record["file"]
        assert record["file"] == f"{name}.npy"
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record["shape"] == list(fields[name].shape)
        assert record["dtype"] == str(fields[name].dtype)
    expected_files = [CACHE_FILE, "meta.json"] + [f"{n}.npy" for n in expected_names]
    assert sorted(p.name for p in root.iterdir()) == sorted(expected_files)
    dataset.verify()


# ---------------------------------------------------------------- errors on open


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write(root)
    return root


def open_error(root: Path) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        Dataset.open(root)
    return info.value


def test_truncated_npy(dataset_dir: Path) -> None:
    path = dataset_dir / "obs.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    error = open_error(dataset_dir)
    assert_dataset_error(error, "obs", "obs.npy", "readable .npy", "unreadable")
    path.write_bytes(data[:20])  # cut into the header
    assert_dataset_error(open_error(dataset_dir), "obs", "obs.npy", "readable .npy", "unreadable")


def test_wrong_dtype(dataset_dir: Path) -> None:
    reward = np.load(dataset_dir / "reward.npy")
    rewrite(dataset_dir / "reward.npy", reward.astype(np.float64))
    error = open_error(dataset_dir)
    assert_dataset_error(error, "reward", "reward.npy", "float32", "float64")


def test_nan_reward(dataset_dir: Path) -> None:
    reward = np.load(dataset_dir / "reward.npy")
    reward[3] = np.nan
    rewrite(dataset_dir / "reward.npy", reward)
    error = open_error(dataset_dir)
    assert_dataset_error(error, "reward", "reward.npy", "finite", "nan at row 3")


def test_inf_obs(dataset_dir: Path) -> None:
    obs = np.load(dataset_dir / "obs.npy")
    obs[7, 1, 2] = np.inf
    rewrite(dataset_dir / "obs.npy", obs)
    error = open_error(dataset_dir)
    assert_dataset_error(error, "obs", "obs.npy", "finite", "inf at row 7")


def test_missing_field(dataset_dir: Path) -> None:
    (dataset_dir / "actions.npy").unlink()
    error = open_error(dataset_dir)
    assert_dataset_error(error, "actions", "actions.npy", "exist", "no such file")


def test_wrong_agent_dim(dataset_dir: Path) -> None:
    obs = np.load(dataset_dir / "obs.npy")
    rows = obs.shape[0]
    rewrite(dataset_dir / "obs.npy", np.concatenate([obs, obs[:, :1]], axis=1))
    error = open_error(dataset_dir)
    assert_dataset_error(error, "obs", "obs.npy", f"[{rows}, 2, 3]", f"[{rows}, 3, 3]")


def test_valid_flag_on_final_row(dataset_dir: Path) -> None:
    valid = np.load(dataset_dir / "valid.npy")
    final_row = int(np.load(dataset_dir / "episode_start.npy")[2]) - 1  # final row of episode 1
    assert not valid[final_row]
    valid[final_row] = True
    rewrite(dataset_dir / "valid.npy", valid)
    error = open_error(dataset_dir)
    assert_dataset_error(error, "valid", "valid.npy", "final row", f"valid[{final_row}] = True")


def test_terminal_on_non_final_transition(dataset_dir: Path) -> None:
    terminal = np.load(dataset_dir / "terminal.npy")
    assert not terminal[1]
    terminal[1] = True  # second of the five transitions of episode 0
    rewrite(dataset_dir / "terminal.npy", terminal)
    error = open_error(dataset_dir)
    assert_dataset_error(error, "terminal", "terminal.npy", "last transition", "terminal[1] = True")


def test_terminal_on_final_row(dataset_dir: Path) -> None:
    terminal = np.load(dataset_dir / "terminal.npy")
    terminal[5] = True  # the final row of episode 0 is not a transition
    rewrite(dataset_dir / "terminal.npy", terminal)
    assert_dataset_error(open_error(dataset_dir), "terminal", "terminal.npy", "last transition", "terminal[5]")


def test_discrete_action_out_of_range(dataset_dir: Path) -> None:
    actions = np.load(dataset_dir / "actions.npy")
    actions[2, 1] = 3
    rewrite(dataset_dir / "actions.npy", actions)
    error = open_error(dataset_dir)
    assert_dataset_error(error, "actions", "actions.npy", "[0, 3)", "3 at row 2, agent 1")
    actions[2, 1] = -1
    rewrite(dataset_dir / "actions.npy", actions)
    assert_dataset_error(open_error(dataset_dir), "actions", "actions.npy", "[0, 3)", "-1 at row 2, agent 1")


def test_actions_on_final_rows_are_not_checked(dataset_dir: Path) -> None:
    actions = np.load(dataset_dir / "actions.npy")
    actions[5] = 99  # final row of episode 0: garbage is allowed there
    rewrite(dataset_dir / "actions.npy", actions)
    Dataset.open(dataset_dir, checksums=False)  # the content checks pass; the sha256 no longer matches


def test_unavailable_taken_action(dataset_dir: Path) -> None:
    avail = np.load(dataset_dir / "avail.npy")
    actions = np.load(dataset_dir / "actions.npy")
    avail[4, 0, actions[4, 0]] = False
    rewrite(dataset_dir / "avail.npy", avail)
    error = open_error(dataset_dir)
    assert_dataset_error(error, "avail", "avail.npy", "available", f"action {actions[4, 0]} unavailable at row 4")


def test_corrupt_meta(dataset_dir: Path) -> None:
    (dataset_dir / "meta.json").write_text('{"format_version": 1, "suite": ')
    error = open_error(dataset_dir)
    assert_dataset_error(error, "meta.json", "meta.json", "valid JSON", "parse error")


def test_two_dimensional_reward_names_reward(dataset_dir: Path) -> None:
    reward = np.load(dataset_dir / "reward.npy")
    rewrite(dataset_dir / "reward.npy", reward[:, None])
    assert_dataset_error(open_error(dataset_dir), "reward", "reward.npy", "shape [R]", "shape [")


def test_meta_that_is_not_an_object(dataset_dir: Path) -> None:
    (dataset_dir / "meta.json").write_text("[]")
    assert_dataset_error(open_error(dataset_dir), "meta.json", "meta.json", "a JSON object", "list")
    (dataset_dir / "meta.json").write_text(
        '{"format_version": 1, "suite": "s", "task": "t", "quality": "q", "spec": [1], "files": {}}'
    )
    assert open_error(dataset_dir).field == "spec"


def test_verify_detects_flipped_byte(dataset_dir: Path) -> None:
    path = dataset_dir / "obs.npy"
    data = bytearray(path.read_bytes())
    payload = len(data) - np.load(path).nbytes
    data[payload] ^= 0x01  # lowest mantissa bit of obs[0, 0, 0]: still finite, same shape
    path.write_bytes(bytes(data))
    found = hashlib.sha256(bytes(data)).hexdigest()
    recorded = json.loads((dataset_dir / "meta.json").read_text())["files"]["obs"]["sha256"]
    assert_dataset_error(open_error(dataset_dir), "obs", "obs.npy", recorded, found)  # what training opens
    dataset = Dataset.open(dataset_dir, checksums=False)  # every structural and content check still passes
    with pytest.raises(DatasetError) as info:
        dataset.verify()
    error = info.value
    assert_dataset_error(error, "obs", "obs.npy", recorded, found)
    assert "sha256" in str(error)


# ---------------------------------------------------------------- atomic writes


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_invalid_fields_write_nothing(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "other").mkdir()
    fields = build_fields(DISCRETE)
    fields["reward"] = fields["reward"].copy()
    fields["reward"][0] = np.nan
    with pytest.raises(DatasetError) as info:
        write(parent / "ds", fields=fields)
    assert info.value.field == "reward"
    assert listing(parent) == ["other"]


def fail_on_write(monkeypatch: pytest.MonkeyPatch, failing_call: int) -> list[int]:
    """Make the ``failing_call``-th ``os.write`` fail as on a full disk; returns the call log."""
    real_write = os.write
    calls: list[int] = []

    def write_or_fail(fd: int, data) -> int:
        calls.append(fd)
        if len(calls) == failing_call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_or_fail)
    return calls


def test_failure_midway_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    calls = fail_on_write(monkeypatch, 3)
    with pytest.raises(DatasetWriteError) as info:
        write(parent / "ds")
    assert len(calls) == 3
    assert listing(parent) == []
    assert "ENOSPC" in str(info.value) and str(parent) in str(info.value)


def test_failure_midway_keeps_old_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ds"
    write(root)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    fail_on_write(monkeypatch, 3)
    with pytest.raises(DatasetWriteError):
        write(root, CONTINUOUS, overwrite=True)
    assert listing(tmp_path) == ["ds"]
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before


def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write(root)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite"):
        write(root, CONTINUOUS)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    assert listing(tmp_path) == ["ds"]
    Dataset.open(root).verify()


def test_overwrite_replaces(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    old = write(root)
    old_obs = np.asarray(old.fields["obs"]).copy()
    fields = pack_episodes(**padded_episodes(CONTINUOUS, np.array([2, 4]), np.array([False, True])))
    new = write(root, CONTINUOUS, fields, overwrite=True)
    assert listing(tmp_path) == ["ds"]  # no .old-* or .writing-* leftovers
    assert [name for name in os.listdir(root) if name.startswith(".")] == [CACHE_FILE]
    assert "avail.npy" not in listing(root)  # nothing of the old discrete dataset survives
    reopened = Dataset.open(root)
    reopened.verify()
    assert reopened.spec == CONTINUOUS == new.spec
    assert reopened.n_episodes == 2
    np.testing.assert_array_equal(np.asarray(reopened.fields["obs"]), fields["obs"])
    assert reopened.fields["obs"].shape != old_obs.shape


# ---------------------------------------------------------------- pack_episodes


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_pack_episodes_layout(spec: EnvSpec) -> None:
    padded = padded_episodes(spec)
    fields = pack_episodes(**padded)
    rows = int((LENGTHS + 1).sum())
    assert rows == 15
    np.testing.assert_array_equal(fields["episode_start"], [0, 6, 9, 13])
    assert fields["episode_start"].dtype == np.int64
    final_rows = [5, 8, 12, 14]
    expected_valid = np.ones(rows, dtype=bool)
    expected_valid[final_rows] = False
    np.testing.assert_array_equal(fields["valid"], expected_valid)
    expected_terminal = np.zeros(rows, dtype=bool)
    expected_terminal[[4, 11]] = True  # last transitions of the terminated episodes 0 and 2
    np.testing.assert_array_equal(fields["terminal"], expected_terminal)
    assert (fields["reward"][final_rows] == 0).all()
    assert fields["reward"].dtype == np.float32 and fields["obs"].dtype == np.float32
    assert fields["actions"].dtype == (np.int64 if spec.discrete else np.float32)
    for name in ("obs", "state", "reward", "actions") + (("avail",) if spec.discrete else ()):
        assert fields[name].shape[0] == rows, name
    row = 0
    for e, length in enumerate(LENGTHS):
        for t in range(length + 1):
            np.testing.assert_array_equal(fields["obs"][row], padded["obs"][e, t])
            np.testing.assert_array_equal(fields["state"][row], padded["state"][e, t])
            assert tuple(fields["obs"][row, 0, :2]) == (e, t)
            if t < length:
                assert fields["reward"][row] == padded["reward"][e, t]
                np.testing.assert_array_equal(fields["actions"][row], padded["actions"][e, t])
            if spec.discrete:
                np.testing.assert_array_equal(fields["avail"][row], padded["avail"][e, t])
            row += 1
    assert row == rows
    assert "avail" in fields if spec.discrete else "avail" not in fields


def test_pack_episodes_default_lengths_and_bad_lengths() -> None:
    padded = padded_episodes(DISCRETE, np.full(4, HORIZON), np.zeros(4, dtype=bool))
    padded.pop("lengths")
    fields = pack_episodes(**padded)
    np.testing.assert_array_equal(fields["episode_start"], np.arange(4) * (HORIZON + 1))
    assert not fields["terminal"].any()
    padded["lengths"] = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="lengths"):
        pack_episodes(**padded)
    padded["lengths"] = np.array([1, 2, 3, HORIZON + 1])
    with pytest.raises(ValueError, match="lengths"):
        pack_episodes(**padded)

"""The sampler: transitions r -> r+1 inside episodes, terminals, seeding, resumption, no copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from marlbench.data.episodes import pack_episodes
from marlbench.data.sampler import Batch, Sampler
from marlbench.data.store import Dataset, write_dataset
from marlbench.spec import EnvSpec

DISCRETE = EnvSpec(n_agents=2, obs_dim=3, state_dim=2, action_type="discrete", n_actions=4, episode_limit=6)
CONTINUOUS = EnvSpec(n_agents=2, obs_dim=3, state_dim=2, action_type="continuous", action_dim=2, episode_limit=6)
LENGTHS = np.array([6, 1, 3, 4, 2, 6, 5])
TERMINATED = np.array([True, False, True, False, True, False, True])
HORIZON = 6
BATCH = 256


def make_dataset(root: Path, spec: EnvSpec) -> Dataset:
    """obs[..., :2] and state hold (episode, t), so every sampled row says where it came from."""
    episodes, n = len(LENGTHS), spec.n_agents
    e = np.arange(episodes)[:, None]
    t = np.arange(HORIZON + 1)[None, :]
    obs = np.zeros((episodes, HORIZON + 1, n, spec.obs_dim), dtype=np.float32)
    obs[..., 0] = e[..., None]
    obs[..., 1] = t[..., None]
    obs[..., 2] = np.arange(n)
    state = np.stack(np.broadcast_arrays(e, t), axis=-1).astype(np.float32)
    reward = (10 * e + t[:, :HORIZON]).astype(np.float32)
    if spec.discrete:
        actions = ((e + t[:, :HORIZON])[..., None] + np.arange(n)) % spec.n_actions
        avail = np.ones((episodes, HORIZON + 1, n, spec.n_actions), dtype=bool)
        taken = np.concatenate([actions, actions[:, -1:]], axis=1)
        np.put_along_axis(avail, ((taken + 2) % spec.n_actions)[..., None], False, axis=-1)
    else:
        actions = np.tanh(np.sin(e + t[:, :HORIZON])[..., None, None] * np.ones((n, 2)))
        avail = None
    fields = pack_episodes(
        obs=obs,
        state=state,
        actions=actions,
        reward=reward,
        terminated=TERMINATED,
        lengths=LENGTHS,
        avail=avail,
    )
    return write_dataset(root, fields, spec=spec, suite="toy", task="t", quality="q", source={"generator": "tests"})


@pytest.fixture(params=["discrete", "continuous"])
def dataset(request: pytest.FixtureRequest, tmp_path: Path) -> Dataset:
    return make_dataset(tmp_path / request.param, DISCRETE if request.param == "discrete" else CONTINUOUS)


def batches_equal(a: Batch, b: Batch) -> bool:
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None):
            return False
        if x is not None and not torch.equal(x, y):
            return False
    return True


def test_transitions_stay_inside_episodes(dataset: Dataset) -> None:
    sampler = Sampler(dataset, seed=0)
    starts = np.asarray(dataset.fields["episode_start"])
    obs_all = np.asarray(dataset.fields["obs"])
    state_all = np.asarray(dataset.fields["state"])
    seen_rows: set[int] = set()
    seen_terminal = seen_timeout = 0
    for _ in range(4):
        batch = sampler.sample(BATCH)
        assert batch.obs.shape == (BATCH, 2, 3) and batch.next_obs.shape == (BATCH, 2, 3)
        assert batch.state.shape == (BATCH, 2) and batch.next_state.shape == (BATCH, 2)
        assert batch.reward.shape == (BATCH,) and batch.terminal.shape == (BATCH,)
        obs, next_obs = batch.obs.numpy(), batch.next_obs.numpy()
        episode = obs[:, 0, 0].astype(int)
        t = obs[:, 0, 1].astype(int)
        rows = starts[episode] + t
        seen_rows.update(rows.tolist())
        assert (t < LENGTHS[episode]).all()  # a valid row: never a final row
        np.testing.assert_array_equal(obs, obs_all[rows])
        np.testing.assert_array_equal(next_obs, obs_all[rows + 1])
        np.testing.assert_array_equal(batch.next_state.numpy(), state_all[rows + 1])
        # the successor is the next step of the same episode
        np.testing.assert_array_equal(next_obs[:, :, 0], obs[:, :, 0])
        np.testing.assert_array_equal(next_obs[:, :, 1], obs[:, :, 1] + 1)
        np.testing.assert_array_equal(batch.next_state.numpy()[:, 0], episode)
        np.testing.assert_array_equal(batch.next_state.numpy()[:, 1], t + 1)
        np.testing.assert_array_equal(batch.reward.numpy(), 10 * episode + t)
        np.testing.assert_array_equal(batch.actions.numpy(), np.asarray(dataset.fields["actions"])[rows])
        last = t == LENGTHS[episode] - 1
        expected_terminal = (last & TERMINATED[episode]).astype(np.float32)
        np.testing.assert_array_equal(batch.terminal.numpy(), expected_terminal)
        seen_terminal += int(expected_terminal.sum())
        seen_timeout += int((last & ~TERMINATED[episode]).sum())
        if dataset.spec.discrete:
            avail_all = np.asarray(dataset.fields["avail"])
            np.testing.assert_array_equal(batch.avail.numpy(), avail_all[rows])
            np.testing.assert_array_equal(batch.next_avail.numpy(), avail_all[rows + 1])
        # initial obs/state/avail come from episode starts
        initial_episode = batch.initial_obs.numpy()[:, 0, 0].astype(int)
        assert (batch.initial_obs.numpy()[:, :, 1] == 0).all()
        assert (batch.initial_state.numpy()[:, 1] == 0).all()
        np.testing.assert_array_equal(batch.initial_state.numpy()[:, 0], initial_episode)
        np.testing.assert_array_equal(batch.initial_obs.numpy(), obs_all[starts[initial_episode]])
        if dataset.spec.discrete:
            np.testing.assert_array_equal(
                batch.initial_avail.numpy(), np.asarray(dataset.fields["avail"])[starts[initial_episode]]
            )
    # the checks above covered every valid row, terminal and time-limited last transitions
    assert seen_rows == set(np.flatnonzero(np.asarray(dataset.fields["valid"])).tolist())
    assert seen_terminal > 0 and seen_timeout > 0


def test_dtypes_and_avail(dataset: Dataset) -> None:
    batch = Sampler(dataset, seed=1).sample(8)
    assert batch.obs.dtype == torch.float32 and batch.next_obs.dtype == torch.float32
    assert batch.state.dtype == torch.float32 and batch.initial_state.dtype == torch.float32
    assert batch.reward.dtype == torch.float32
    assert batch.terminal.dtype == torch.float32
    if dataset.spec.discrete:
        assert batch.actions.dtype == torch.int64 and batch.actions.shape == (8, 2)
        for avail in (batch.avail, batch.next_avail, batch.initial_avail):
            assert avail is not None and avail.dtype == torch.bool and avail.shape == (8, 2, 4)
    else:
        assert batch.actions.dtype == torch.float32 and batch.actions.shape == (8, 2, 2)
        assert batch.avail is None and batch.next_avail is None and batch.initial_avail is None
    moved = batch.to("cpu")
    assert batches_equal(moved, batch)


def test_seeding(dataset: Dataset) -> None:
    a, b, c = Sampler(dataset, seed=7), Sampler(dataset, seed=7), Sampler(dataset, seed=8)
    batches_a = [a.sample(64) for _ in range(3)]
    batches_b = [b.sample(64) for _ in range(3)]
    batches_c = [c.sample(64) for _ in range(3)]
    assert all(batches_equal(x, y) for x, y in zip(batches_a, batches_b, strict=True))
    assert not any(batches_equal(x, y) for x, y in zip(batches_a, batches_c, strict=True))
    assert not batches_equal(batches_a[0], batches_a[1])  # the stream moves on


def test_state_dict_resumes_stream(dataset: Dataset) -> None:
    original = Sampler(dataset, seed=3)
    original.sample(32)
    original.sample(32)
    snapshot = json.loads(json.dumps(original.state_dict()))  # survives a JSON/checkpoint round trip
    expected = [original.sample(32) for _ in range(3)]
    resumed = Sampler(dataset, seed=999)
    resumed.load_state_dict(snapshot)
    got = [resumed.sample(32) for _ in range(3)]
    assert all(batches_equal(x, y) for x, y in zip(expected, got, strict=True))


def test_sampler_does_not_copy_fields(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "ds", DISCRETE)
    obs = dataset.fields["obs"]
    sampler = Sampler(dataset, seed=0)
    sampler.sample(16)
    assert sampler.dataset is dataset
    for name, field in sampler.dataset.fields.items():
        assert isinstance(field, np.memmap), name
        assert not field.flags.writeable, name
    assert sampler.dataset.fields["obs"] is obs
    rows = dataset.n_rows
    array_attributes = {}
    for name, value in vars(sampler).items():
        if isinstance(value, torch.Tensor):
            value = value.numpy()
        if isinstance(value, np.ndarray):
            array_attributes[name] = value
            assert not isinstance(value, np.memmap) or value.shape[0] == dataset.n_episodes, name
            assert value.size <= rows and value.nbytes < obs.nbytes, name
    assert set(array_attributes) <= {"valid_rows", "episode_start"}
    assert array_attributes["valid_rows"].shape == (dataset.n_transitions,)

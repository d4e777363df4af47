"""Matrix suite: exact dataset compositions, the bandit mixture, dataset cards, and the environments."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from marlbench.data.card import card, format_card, joint_action_histogram
from marlbench.data.store import Dataset
from marlbench.spec import EnvSpec
from marlbench.suites.matrix import MatrixSuite
from marlbench.suites.matrix.games import (
    MNE,
    MNE_TASK,
    XOR,
    XOR_TASK,
    PayoffGame,
    PayoffGameEnv,
    bandit_fields,
    joint_action_fields,
)

XOR_REWARDS = {"AA": 0.0, "AB": 1.0, "BA": 1.0, "BB": -2.0}


def generate(tmp_path: Path, task: str, quality: str, **kwargs) -> Dataset:
    return MatrixSuite().generate(task, quality, tmp_path / f"{task}-{quality}", **kwargs)


def valid_actions_and_rewards(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    valid = np.asarray(dataset.fields["valid"])
    return np.asarray(dataset.fields["actions"])[valid], np.asarray(dataset.fields["reward"])[valid]


@pytest.mark.parametrize(
    ("quality", "joints"),
    [
        ("ab", ["AB"]),
        ("ab-ba", ["AB", "BA"]),
        ("aa-ab-ba", ["AA", "AB", "BA"]),
        ("aa-ab-ba-bb", ["AA", "AB", "BA", "BB"]),
    ],
)
def test_xor_compositions(tmp_path: Path, quality: str, joints: list[str]) -> None:
    dataset = generate(tmp_path, "xor", quality)
    histogram = joint_action_histogram(dataset)
    expected = {joint: (1000 if joint in joints else 0) for joint in ("AA", "AB", "BA", "BB")}
    assert histogram == expected
    assert dataset.n_episodes == dataset.n_transitions == 1000 * len(joints)
    assert dataset.n_rows == 2 * dataset.n_episodes  # one step plus the final row per episode
    actions, rewards = valid_actions_and_rewards(dataset)
    labels = np.array(["AB"[a] + "AB"[b] for a, b in actions])
    for joint, reward in XOR_REWARDS.items():
        assert (rewards[labels == joint] == reward).all(), joint
    np.testing.assert_array_equal(rewards, XOR.payoff[actions[:, 0], actions[:, 1]])
    assert np.asarray(dataset.fields["terminal"]).sum() == dataset.n_episodes  # every episode ends in a terminal
    stats = dataset.meta["statistics"]
    assert stats["return_mean"] == pytest.approx(np.mean([XOR_REWARDS[j] for j in joints]))


def test_xor_custom_size_and_divisibility(tmp_path: Path) -> None:
    dataset = generate(tmp_path, "xor", "aa-ab-ba", episodes=12)
    assert joint_action_histogram(dataset) == {"AA": 4, "AB": 4, "BA": 4, "BB": 0}
    with pytest.raises(ValueError, match="multiple of 2"):
        XOR_TASK.fields("ab-ba", 7)
    with pytest.raises(ValueError, match="multiple of 4"):
        generate(tmp_path, "xor", "aa-ab-ba-bb", episodes=10)
    assert not (tmp_path / "xor-aa-ab-ba-bb").exists()


def test_mne_uniform(tmp_path: Path) -> None:
    dataset = generate(tmp_path, "mne", "uniform")
    histogram = joint_action_histogram(dataset)
    assert len(histogram) == 9
    assert histogram == {a + b: 1000 for a in "ABC" for b in "ABC"}
    actions, rewards = valid_actions_and_rewards(dataset)
    expected = np.where(actions[:, 0] == actions[:, 1], np.array([5.0, 10.0, 20.0])[actions[:, 0]], 0.0)
    np.testing.assert_array_equal(rewards, expected)


def test_mne_biased(tmp_path: Path) -> None:
    dataset = generate(tmp_path, "mne", "biased")
    expected = {"AA": 5760, "AB": 720, "AC": 720, "BA": 720, "CA": 720, "BB": 90, "BC": 90, "CB": 90, "CC": 90}
    assert joint_action_histogram(dataset) == dict(sorted(expected.items()))
    assert dataset.n_episodes == 9000
    actions, rewards = valid_actions_and_rewards(dataset)
    diagonal = actions[:, 0] == actions[:, 1]
    assert (rewards[~diagonal] == 0).all()
    for action, reward in enumerate([5.0, 10.0, 20.0]):
        assert (rewards[diagonal & (actions[:, 0] == action)] == reward).all()
    np.testing.assert_array_equal(MNE.payoff, np.diag([5.0, 10.0, 20.0]))
    with pytest.raises(ValueError, match="exact joint shares"):
        MNE_TASK.fields("biased", 50)


def clipped_normal_moments(mean: float, std: float, high: float) -> tuple[float, float]:
    """Mean and std of min(X, high) for X ~ N(mean, std^2) (the lower clip at -1 is negligible here)."""
    z = (high - mean) / std
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    below = 0.5 * math.erfc(-z / math.sqrt(2))
    first = mean * below - std * pdf + high * (1 - below)
    second = (mean**2 + std**2) * below - std * (high + mean) * pdf + high**2 * (1 - below)
    return first, math.sqrt(second - first**2)


def test_bandit_mixture(tmp_path: Path) -> None:
    dataset = generate(tmp_path, "bandit", "gmm", seed=0, episodes=20000)
    actions, rewards = valid_actions_and_rewards(dataset)
    assert actions.shape == (20000, 2, 1) and actions.dtype == np.float32
    joint = actions[..., 0]
    assert joint.min() >= -1.0 and joint.max() <= 1.0
    assert joint.max() == 1.0 and joint.min() == -1.0  # clipped, not rescaled
    positive = joint.sum(axis=1) > 0
    assert abs(positive.mean() - 0.5) < 0.02
    np.testing.assert_allclose(joint[positive].mean(axis=0), [0.8, 0.8], atol=0.05)
    np.testing.assert_allclose(joint[~positive].mean(axis=0), [-0.8, -0.8], atol=0.05)
    clipped_mean, clipped_std = clipped_normal_moments(0.8, 0.3, 1.0)  # about 0.755 and 0.237
    np.testing.assert_allclose(joint[positive].mean(axis=0), [clipped_mean] * 2, atol=0.01)
    np.testing.assert_allclose(joint[~positive].mean(axis=0), [-clipped_mean] * 2, atol=0.01)
    np.testing.assert_allclose(joint[positive].std(axis=0), [clipped_std] * 2, atol=0.01)
    np.testing.assert_allclose(joint[~positive].std(axis=0), [clipped_std] * 2, atol=0.01)
    np.testing.assert_allclose(rewards, joint[:, 0] * joint[:, 1], rtol=1e-6, atol=1e-7)
    assert joint_action_histogram(dataset) is None


def test_bandit_seeding() -> None:
    a, b = bandit_fields(seed=5, episodes=500), bandit_fields(seed=5, episodes=500)
    c = bandit_fields(seed=6, episodes=500)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not np.array_equal(a["actions"], c["actions"])


@pytest.mark.parametrize(("task", "quality"), [("xor", "ab-ba"), ("mne", "biased"), ("bandit", "gmm")])
def test_generate_writes_valid_dataset_with_card(tmp_path: Path, task: str, quality: str) -> None:
    episodes = 1000 if task == "bandit" else None
    written = generate(tmp_path, task, quality, seed=2, episodes=episodes)
    dataset = Dataset.open(written.root)
    dataset.verify()
    assert dataset.identity == f"matrix/{task}/{quality}"
    assert dataset.meta["source"]["generator"] == "marlbench.matrix"
    assert dataset.meta["source"]["config"] == {"task": task, "quality": quality, "seed": 2, "episodes": episodes}
    assert dataset.spec == MatrixSuite().task(task).spec

    info = card(dataset)
    stats = dataset.meta["statistics"]
    returns = dataset.episode_returns()
    assert info["episodes"] == stats["episodes"] == dataset.n_episodes
    assert info["transitions"] == dataset.n_transitions == dataset.n_episodes
    assert info["return_mean"] == pytest.approx(returns.mean())
    assert info["return_std"] == pytest.approx(returns.std())
    assert info["return_min"] == pytest.approx(returns.min())
    assert info["return_max"] == pytest.approx(returns.max())
    assert info["episode_length_min"] == info["episode_length_max"] == 1
    assert info["source"]["generator"] == "marlbench.matrix"
    text = format_card(info)
    assert text.startswith(f"# matrix/{task}/{quality}")
    lines = text.splitlines()
    assert any(line.split() == ["episodes", str(dataset.n_episodes)] for line in lines)
    assert any(line.split() == ["transitions", str(dataset.n_transitions)] for line in lines)
    for key in ("return_mean", "return_std", "return_min", "return_max"):
        assert any(line.split() == [key, f"{info[key]:.4g}"] for line in lines), key
    histogram = info["joint_action_histogram"]
    if task == "bandit":
        assert histogram is None
        assert "joint action" not in text
        assert "continuous" in text
    else:
        assert histogram == joint_action_histogram(dataset)
        assert "joint action   count   share" in text
        total = sum(histogram.values())
        for joint, count in histogram.items():
            assert any(line.split() == [joint, str(count), f"{count / total:.3f}"] for line in lines), joint
    if task == "xor":
        assert histogram == {"AA": 0, "AB": 1000, "BA": 1000, "BB": 0}


def test_xor_env() -> None:
    env = MatrixSuite().make_env("xor", 4)
    np.testing.assert_array_equal(env.payoff, [[0.0, 1.0], [1.0, -2.0]])
    obs, state, avail = env.reset(seed=0)
    assert obs.shape == (4, 2, 1) and state.shape == (4, 1)
    assert avail.shape == (4, 2, 2) and avail.dtype == bool and avail.all()
    joint = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    obs, state, avail, reward, done, info = env.step(joint)
    np.testing.assert_array_equal(reward, [0.0, 1.0, 1.0, -2.0])
    assert done.dtype == bool and done.all()
    assert obs.shape == (4, 2, 1)
    _, _, _, reward, done, _ = env.step(joint)
    np.testing.assert_array_equal(reward, [0.0, 0.0, 0.0, 0.0])  # finished episodes stay finished
    assert done.all()
    env.reset(seed=1)
    _, _, _, reward, _, _ = env.step(joint[::-1])
    np.testing.assert_array_equal(reward, [-2.0, 1.0, 1.0, 0.0])


def test_mne_env() -> None:
    env = MatrixSuite().make_env("mne", 3)
    np.testing.assert_array_equal(env.payoff, np.diag([5.0, 10.0, 20.0]))
    _, _, avail = env.reset(seed=0)
    assert avail.shape == (3, 2, 3) and avail.all()
    _, _, _, reward, done, _ = env.step(np.array([[2, 2], [1, 1], [0, 2]]))
    np.testing.assert_array_equal(reward, [20.0, 10.0, 0.0])
    assert done.all()


def test_bandit_env() -> None:
    env = MatrixSuite().make_env("bandit", 5)
    assert env.payoff is None
    obs, state, avail = env.reset(seed=0)
    assert obs.shape == (5, 2, 1) and state.shape == (5, 1) and avail is None
    actions = np.array([[0.5, 0.5], [2.0, 0.5], [-3.0, -3.0], [1.0, -1.0], [-0.4, 0.25]], dtype=np.float32)
    _, _, avail, reward, done, _ = env.step(actions[:, :, None])
    assert avail is None
    np.testing.assert_allclose(reward, [0.25, 0.5, 1.0, -1.0, -0.1], rtol=1e-6)
    assert done.all()
    _, _, _, reward, done, _ = env.step(actions[:, :, None])
    np.testing.assert_array_equal(reward, np.zeros(5))
    assert done.all()


# --- the n-agent payoff game and its dataset builder ------------------------------------

TRIO = np.arange(27, dtype=np.float32).reshape(3, 3, 3)  # payoff[a, b, c] = 9a + 3b + c


def test_payoff_game_of_three_agents() -> None:
    game = PayoffGame(TRIO)
    assert game.spec == EnvSpec(
        n_agents=3, obs_dim=1, state_dim=1, action_type="discrete", n_actions=3, episode_limit=1
    )
    assert game.reference_returns() == {"min": 0.0, "max": 26.0}
    env = PayoffGameEnv(TRIO, 3)
    np.testing.assert_array_equal(env.payoff, TRIO)
    obs, state, avail = env.reset(seed=0)
    assert obs.shape == (3, 3, 1) and state.shape == (3, 1) and avail.shape == (3, 3, 3) and avail.all()
    _, _, _, reward, done, _ = env.step(np.array([[0, 0, 0], [2, 1, 0], [1, 2, 2]]))
    np.testing.assert_array_equal(reward, [0.0, 21.0, 17.0])
    assert done.all()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([[0, 0], [1, 1], [2, 2]]))


@pytest.mark.parametrize("payoff", [np.zeros((2, 3)), np.zeros(()), [[1.0, np.nan], [0.0, 0.0]]])
def test_payoff_game_refuses_ragged_empty_or_non_finite_payoffs(payoff) -> None:
    with pytest.raises(ValueError, match="payoff"):
        PayoffGame(payoff)


def test_joint_action_fields_from_a_mapping_or_an_array() -> None:
    mapping = {(2, 1, 0): 3, (0, 0, 1): 2}
    array = np.zeros((3, 3, 3), dtype=np.int64)
    array[2, 1, 0], array[0, 0, 1] = 3, 2
    from_mapping, from_array = joint_action_fields(TRIO, mapping), joint_action_fields(PayoffGame(TRIO), array)
    assert set(from_mapping) == set(from_array)
    for name in from_mapping:
        np.testing.assert_array_equal(from_mapping[name], from_array[name], err_msg=name)
    valid = from_mapping["valid"]
    np.testing.assert_array_equal(from_mapping["actions"][valid], [[0, 0, 1]] * 2 + [[2, 1, 0]] * 3)
    np.testing.assert_array_equal(from_mapping["reward"][valid], [1.0] * 2 + [21.0] * 3)
    assert from_mapping["avail"].shape == (10, 3, 3) and from_mapping["terminal"].sum() == 5


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ({(3, 0, 0): 1}, "not one of a game"),
        ({(0, 0): 1}, "not one of a game"),
        (np.ones((3, 3), dtype=np.int64), "payoff's shape"),
        (np.full((3, 3, 3), 0.5), "non-negative integers"),
        ({(0, 0, 0): -1, (1, 1, 1): 2}, "non-negative integers"),
        ({(0, 0, 0): 2.5}, "non-negative integers"),
        ({}, "no episode"),
    ],
)
def test_joint_action_fields_refuses_bad_counts(counts, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        joint_action_fields(TRIO, counts)


@pytest.mark.parametrize(
    ("task", "quality", "actions", "reward"),
    [
        (
            "xor",
            "ab-ba",
            "f6e9371a931a98e4fda9cffeb414016e3f8969aa16cad6340d1e58734e5c613a",
            "84d894215a870d22fb6e24d9c6b5d9275c3bfe96d0a90a9bd9f0c8cf4eb51e05",
        ),
        (
            "mne",
            "biased",
            "7f7f3b7c28457ddd5c3ab5d20d7c116f22aa6ff4c475e4031450183dcd98a12b",
            "75cfc6765b9fe2238d935690acd98baaba0479e2b9e6b9ca7bdf00750374133a",
        ),
    ],
)
def test_published_matrix_datasets_keep_their_bytes(tmp_path: Path, task, quality, actions, reward) -> None:
    """The datasets the published numbers were measured on (before XOR and M-NE became payoff games)."""
    files = generate(tmp_path, task, quality).meta["files"]
    assert (files["actions"]["sha256"], files["reward"]["sha256"]) == (actions, reward)

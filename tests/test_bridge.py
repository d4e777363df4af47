"""AlberDICE's Bridge: movement rules, rewards, episode ends, and the generated datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marlbench.data.store import episode_returns, validate_fields
from marlbench.suites.matrix.bridge import (
    BRIDGE_SPEC,
    DOWN,
    HORIZON,
    LEFT,
    RIGHT,
    START_STATE,
    STAY,
    UP,
    BridgeEnv,
    bridge_fields,
    bridge_transition,
    first_action_allowed,
    solve_bridge,
)

SQRT10 = np.sqrt(10.0)


def move(
    pos: list[list[int]], actions: list[int], done: list[bool] | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """One transition of a single state: ``(new positions [2, 2], new done [2], reward)``."""
    flags = np.array([done or [False, False]])
    new_pos, new_done, reward = bridge_transition(np.array([pos]), flags, np.array([actions]))
    return new_pos[0], new_done[0], float(reward[0])


def returns_and_lengths(fields: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    returns = episode_returns(fields["reward"], fields["valid"], fields["episode_start"])
    lengths = np.diff(np.append(fields["episode_start"], fields["reward"].shape[0])) - 1
    return returns, lengths


@pytest.mark.parametrize(
    ("pos", "actions"),
    [
        ([[1, 2], [1, 4]], [UP, STAY]),  # wall above the bridge
        ([[1, 2], [1, 4]], [DOWN, STAY]),  # wall below the bridge
        ([[0, 1], [1, 4]], [RIGHT, STAY]),  # wall at (0, 2)
        ([[0, 1], [0, 5]], [UP, RIGHT]),  # top edge, right edge
        ([[2, 0], [2, 4]], [LEFT, DOWN]),  # left edge, bottom edge
    ],
)
def test_walls_and_edges_block(pos: list[list[int]], actions: list[int]) -> None:
    new_pos, new_done, _ = move(pos, actions)
    np.testing.assert_array_equal(new_pos, pos)
    assert not new_done.any()


def test_swapping_is_blocked_for_both() -> None:
    new_pos, _, _ = move([[1, 2], [1, 3]], [RIGHT, LEFT])
    np.testing.assert_array_equal(new_pos, [[1, 2], [1, 3]])


@pytest.mark.parametrize(("pos", "actions"), [([[1, 0], [1, 2]], [RIGHT, LEFT]), ([[0, 1], [2, 1]], [DOWN, UP])])
def test_same_target_blocks_both(pos: list[list[int]], actions: list[int]) -> None:
    new_pos, _, _ = move(pos, actions)
    np.testing.assert_array_equal(new_pos, pos)


def test_moving_into_a_staying_or_blocked_agent_is_blocked() -> None:
    np.testing.assert_array_equal(move([[1, 2], [1, 3]], [RIGHT, STAY])[0], [[1, 2], [1, 3]])
    # agent 1 bumps into the right edge, so agent 0 cannot take its cell either
    np.testing.assert_array_equal(move([[1, 4], [1, 5]], [RIGHT, RIGHT])[0], [[1, 4], [1, 5]])


@pytest.mark.parametrize(
    ("pos", "actions", "expected"),
    [
        ([[1, 2], [1, 3]], [RIGHT, RIGHT], [[1, 3], [1, 4]]),  # agent 0 follows agent 1
        ([[1, 2], [1, 3]], [LEFT, LEFT], [[1, 1], [1, 2]]),  # agent 1 follows agent 0
        ([[2, 1], [1, 1]], [UP, UP], [[1, 1], [0, 1]]),
    ],
)
def test_following_into_a_vacated_cell_is_allowed(
    pos: list[list[int]], actions: list[int], expected: list[list[int]]
) -> None:
    np.testing.assert_array_equal(move(pos, actions)[0], expected)


def test_done_agents_leave_the_board_and_ignore_actions() -> None:
    # agent 1 is done on its goal (0, 0): agent 0 may walk onto that cell, agent 1 does not move
    new_pos, new_done, reward = move([[0, 1], [0, 0]], [LEFT, RIGHT], done=[False, True])
    np.testing.assert_array_equal(new_pos, [[0, 0], [0, 0]])
    np.testing.assert_array_equal(new_done, [False, True])
    assert reward == pytest.approx(-0.1 * np.hypot(2, 5) / 2)
    # a move into the goal finishes the agent
    new_pos, new_done, reward = move([[1, 5], [1, 0]], [DOWN, STAY])
    np.testing.assert_array_equal(new_done, [True, False])
    assert reward == pytest.approx(-0.1 * (0.0 + 1.0) / 2)


def test_reset_observation_and_state() -> None:
    env = BridgeEnv(3)
    obs, state, avail = env.reset(seed=0)
    expected = np.array([1, 2, 2, 5, 1, 3, 0, 0], dtype=np.float32)
    assert obs.shape == (3, 2, 8) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs, np.broadcast_to(expected, (3, 2, 8)))
    np.testing.assert_array_equal(state, np.broadcast_to(expected, (3, 8)))
    assert avail is not None and avail.shape == (3, 2, 5) and avail.all()
    np.testing.assert_array_equal(env.reset(seed=123)[0], obs)


def test_reward_of_a_hand_computed_step() -> None:
    env = BridgeEnv(2)
    env.reset(seed=0)
    # env 0: both step back, to (1, 1) and (1, 4), each sqrt(1 + 16) from its goal; env 1: swap, blocked
    obs, state, _, reward, done, info = env.step(np.array([[LEFT, RIGHT], [RIGHT, LEFT]]))
    np.testing.assert_allclose(reward, [-0.1 * np.sqrt(17.0), -0.1 * SQRT10], rtol=1e-6)
    np.testing.assert_array_equal(state[0], [1, 1, 2, 5, 1, 4, 0, 0])
    np.testing.assert_array_equal(state[1], [1, 2, 2, 5, 1, 3, 0, 0])
    np.testing.assert_array_equal(obs[:, 0], state)
    np.testing.assert_array_equal(obs[:, 1], state)
    assert not done.any() and info == {}


def test_time_limit_ends_the_episode_at_50_steps() -> None:
    env = BridgeEnv(2)
    env.reset(seed=0)
    stay = np.zeros((2, 2), dtype=np.int64)
    for step in range(1, HORIZON + 1):
        _, _, _, reward, done, _ = env.step(stay)
        np.testing.assert_allclose(reward, -0.1 * SQRT10, rtol=1e-6)  # the last step keeps its reward
        assert done.all() == (step == BRIDGE_SPEC.episode_limit) and done.all() == done.any()
    obs, _, _, reward, done, _ = env.step(np.full((2, 2), LEFT))
    np.testing.assert_array_equal(reward, 0.0)
    assert done.all()
    np.testing.assert_array_equal(obs[:, 0, [0, 1, 4, 5]], [[1, 2, 1, 3]] * 2)


def test_finished_episodes_stay_finished_with_zero_reward() -> None:
    fields = bridge_fields("optimal", episodes=2)
    plan = fields["actions"][: fields["episode_start"][1] - 1]  # the first optimal episode
    env = BridgeEnv(2)
    env.reset(seed=0)
    for step in range(len(plan) + 5):
        actions = np.stack([plan[step] if step < len(plan) else [RIGHT, RIGHT], [STAY, STAY]])
        obs, _, _, reward, done, _ = env.step(actions)
        assert done[0] == (step >= len(plan) - 1) and not done[1]
        if step >= len(plan):
            assert reward[0] == 0.0 and reward[1] < 0.0
            np.testing.assert_array_equal(obs[0, 0, [0, 1, 4, 5]], [2, 5, 0, 0])


def test_vectorised_step_equals_single_env_steps() -> None:
    rng = np.random.default_rng(7)
    n = 32
    batch = BridgeEnv(n)
    singles = [BridgeEnv(1) for _ in range(n)]
    batch_out = batch.reset(seed=0)
    for env in singles:
        env.reset(seed=0)
    finished = 0
    for _ in range(HORIZON + 2):
        # biased towards the goals so that some episodes finish early
        actions = rng.choice([STAY, UP, DOWN, RIGHT, LEFT, RIGHT, DOWN], size=(n, 2))
        actions[:, 1] = rng.choice([STAY, UP, DOWN, RIGHT, LEFT, LEFT, UP], size=n)
        batch_out = batch.step(actions)
        for e, env in enumerate(singles):
            single = env.step(actions[e : e + 1])
            for got, want in zip(batch_out[:5], single[:5], strict=True):
                assert got is not None and want is not None
                np.testing.assert_array_equal(got[e], want[0])
        finished = max(finished, int((batch_out[4] & (batch_out[3] == 0)).sum()))
    assert batch_out[4].all()
    assert finished > 0  # the check covered finished episodes


def test_step_rejects_bad_actions() -> None:
    env = BridgeEnv(2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        env.step(np.full((2, 2), 5))


def test_backward_induction_optimum_and_step_back_constraint() -> None:
    solution = solve_bridge()
    optimum = solution.values[HORIZON, START_STATE]
    # one agent must step back; by symmetry of the map either order is optimal
    for yielder in (0, 1):
        assert solution.q[HORIZON, START_STATE][first_action_allowed(yielder)].max() == pytest.approx(optimum)
    assert first_action_allowed(0).sum() == first_action_allowed(1).sum() == 5
    assert optimum == pytest.approx(-1.2354526, abs=1e-6)


def test_generated_datasets_pass_validation() -> None:
    for quality in ("optimal", "mixed"):
        validate_fields(bridge_fields(quality, seed=0, episodes=20), BRIDGE_SPEC, Path("x"))


def test_optimal_dataset_reaches_both_goals_with_the_optimal_return() -> None:
    fields = bridge_fields("optimal")
    starts = fields["episode_start"]
    returns, lengths = returns_and_lengths(fields)
    optimum = solve_bridge().values[HORIZON, START_STATE]
    assert len(starts) == 500
    np.testing.assert_allclose(returns, optimum, atol=1e-5)
    np.testing.assert_array_equal(lengths, 8)
    assert fields["terminal"].sum() == 500 and fields["terminal"][starts + lengths - 1].all()
    final_obs = fields["obs"][starts + lengths]
    np.testing.assert_array_equal(final_obs[:, :, [0, 1, 4, 5]], np.broadcast_to([2, 5, 0, 0], (500, 2, 4)))
    first = fields["actions"][starts]
    assert (first[:250, 0] == LEFT).all() and (first[250:, 1] == RIGHT).all()
    # two deterministic policies, 250 copies each
    per_episode = fields["actions"][starts[:, None] + np.arange(8)]
    assert (per_episode[:250] == per_episode[0]).all() and (per_episode[250:] == per_episode[250]).all()
    assert not np.array_equal(per_episode[0], per_episode[250])
    assert fields["avail"].all()


def test_mixed_dataset_adds_as_many_random_episodes() -> None:
    optimal = bridge_fields("optimal", episodes=100)
    mixed = bridge_fields("mixed", seed=3, episodes=100)
    returns, lengths = returns_and_lengths(mixed)
    assert len(returns) == 200
    rows = optimal["reward"].shape[0]
    for name, array in optimal.items():
        np.testing.assert_array_equal(mixed[name][: len(array)], array)
    assert returns[100:].mean() < returns[:100].mean() - 1.0
    assert (lengths[100:] <= HORIZON).all() and (lengths[100:] > 8).mean() > 0.5
    terminal_rows = np.flatnonzero(mixed["terminal"][rows:]) + rows
    final_positions = mixed["obs"][terminal_rows + 1][:, 0, [0, 1, 4, 5]]
    np.testing.assert_array_equal(final_positions, np.broadcast_to([2, 5, 0, 0], final_positions.shape))
    again = bridge_fields("mixed", seed=3, episodes=100)
    other = bridge_fields("mixed", seed=4, episodes=100)
    np.testing.assert_array_equal(again["actions"], mixed["actions"])
    assert not np.array_equal(other["reward"], mixed["reward"])


def test_generator_rejects_unknown_quality_and_odd_counts() -> None:
    with pytest.raises(ValueError, match="expert"):
        bridge_fields("expert")
    with pytest.raises(ValueError, match="even"):
        bridge_fields("optimal", episodes=7)

"""AlberDICE's Bridge grid world, vectorised with numpy.

The map has 3 rows and 6 columns (row 0 at the top, ``B`` a wall)::

    row 0:  . . B B . .
    row 1:  . . . . . .
    row 2:  . . B B . .

so row 1, columns 2-3, is a bridge one agent wide. Agent 0 starts at (1, 2) with its
goal at (2, 5); agent 1 starts at (1, 3) with its goal at (0, 0). They start side by
side on the bridge facing each other, so one of them must step back to let the other
cross. Every agent has 5 actions, always available: 0 stay, 1 up (row - 1), 2 down
(row + 1), 3 right (col + 1), 4 left (col - 1).

Moves are simultaneous. A move off the grid or into a wall leaves the agent in place.
Between agents, a move is blocked when both agents target the same cell (both are
blocked), when the two would swap cells (both are blocked), or when the target cell is
held by an agent that stays or is itself blocked; moving into a cell that the other
agent leaves successfully is allowed. These rules are applied until nothing changes.
An agent that reaches its goal is done: it leaves the board (it blocks no one) and its
actions are ignored; its position stays its goal.

Team reward of a step: ``-0.1 * mean_i d_i`` where ``d_i`` is the Euclidean distance
from agent i's new position to its goal if agent i was active at the start of the step,
else 0. The episode ends when both agents are done (a true terminal) or after
``episode_limit = 50`` steps (a time limit, not a terminal). Every agent observes, and
the state is, the same 8 numbers ``[row0, col0, goalrow0, goalcol0, row1, col1,
goalrow1, goalcol1]``.

Differences from the reference implementation (our choices):

- Two agents targeting the same cell are both blocked; the reference resolves agents in
  index order, which gives agent 0 priority. The reference also lets an agent step onto
  its own goal through some collisions (depending on that order); here every move
  follows the same rules.
- The reference zeroes the reward of the final step on a time-out; we keep it.

Datasets, in the manner of AlberDICE: ``optimal`` holds two deterministic optimal policies
in equal shares: in one agent 0 steps back first (left, away from its goal side) to let
agent 1 cross, in the other agent 1 steps back first (right). Both come from exact backward induction over the
joint state (each agent's cell, or done) for the 50-step horizon; the first joint action
is restricted to those where the yielding agent steps back, and ties go to the lowest
joint action index ``5 * a0 + a1``. ``mixed`` adds as many episodes of a uniformly
random joint policy. The optimal episodes do not depend on ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from marlbench.data.episodes import pack_episodes
from marlbench.envs.base import Observation, StepResult, VecEnv
from marlbench.spec import EnvSpec

BRIDGE_SPEC = EnvSpec(n_agents=2, obs_dim=8, state_dim=8, action_type="discrete", n_actions=5, episode_limit=50)

ROWS, COLS = 3, 6
WALLS = np.zeros((ROWS, COLS), dtype=bool)
WALLS[[0, 0, 2, 2], [2, 3, 2, 3]] = True
STARTS = np.array([[1, 2], [1, 3]], dtype=np.int64)
GOALS = np.array([[2, 5], [0, 0]], dtype=np.int64)
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, 1], [0, -1]], dtype=np.int64)
"""(row, col) offset of each action: stay, up, down, right, left."""
STAY, UP, DOWN, RIGHT, LEFT = range(5)
REWARD_SCALE = 0.1


def bridge_transition(
    pos: np.ndarray, done: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One simultaneous move of a batch of Bridge states.

    Args:
        pos: ``[B, 2, 2]`` integer (row, col) of each agent (a done agent's is its goal).
        done: ``[B, 2]`` whether each agent has reached its goal.
        actions: ``[B, 2]`` integer actions in ``[0, 5)``.

    Returns:
        ``(new_pos [B, 2, 2], new_done [B, 2], reward [B])``.
    """
    n_agents = done.shape[1]
    active = ~done
    target = pos + MOVES[actions]
    inside = (target >= 0).all(-1) & (target[..., 0] < ROWS) & (target[..., 1] < COLS)
    row = np.clip(target[..., 0], 0, ROWS - 1)
    col = np.clip(target[..., 1], 0, COLS - 1)
    target = np.where((active & inside & ~WALLS[row, col])[..., None], target, pos)
    moving = (target != pos).any(-1)
    # others[b, i, j]: j is an active agent other than i, so it can block i.
    others = active[:, None, :] & ~np.eye(n_agents, dtype=bool)[None]
    into = (target[:, :, None, :] == pos[:, None, :, :]).all(-1) & others
    blocked = moving & (into & into.transpose(0, 2, 1)).any(-1)  # swaps
    while True:  # blocks only accumulate, so this ends within n_agents rounds
        final = np.where((moving & ~blocked)[..., None], target, pos)
        # i is blocked when another agent ends (or wants to end) on i's target.
        taken = ((target[:, :, None, :] == final[:, None, :, :]).all(-1) & others).any(-1)
        now_blocked = blocked | (moving & taken)
        if np.array_equal(now_blocked, blocked):
            break
        blocked = now_blocked
    goals = np.broadcast_to(GOALS, pos.shape)
    new_done = done | (final == goals).all(-1)
    distance = np.where(active, np.linalg.norm((final - goals).astype(np.float64), axis=-1), 0.0)
    return final, new_done, -REWARD_SCALE * distance.mean(-1)


def bridge_observation(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(obs [B, 2, 8], state [B, 8])`` from positions ``[B, 2, 2]``."""
    goals = np.broadcast_to(GOALS, pos.shape)
    state = np.concatenate([pos, goals], axis=-1).reshape(pos.shape[0], -1).astype(np.float32)
    obs = np.repeat(state[:, None, :], pos.shape[1], axis=1)
    return obs, state


class BridgeEnv(VecEnv):
    """B Bridge episodes; deterministic, so the reset seed does not change anything."""

    spec = BRIDGE_SPEC

    def __init__(self, n_envs: int):
        super().__init__(n_envs)
        self._pos = np.zeros((n_envs, 2, 2), dtype=np.int64)
        self._agent_done = np.zeros((n_envs, 2), dtype=bool)
        self._steps = np.zeros(n_envs, dtype=np.int64)
        self._finished = np.zeros(n_envs, dtype=bool)

    def _observation(self) -> Observation:
        obs, state = bridge_observation(self._pos)
        avail = np.ones((self.n_envs, 2, BRIDGE_SPEC.n_actions or 0), dtype=bool)
        return obs, state, avail

    def reset(self, seed: int) -> Observation:
        self._pos[:] = STARTS
        self._agent_done[:] = False
        self._steps[:] = 0
        self._finished[:] = False
        return self._observation()

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions)
        if actions.shape != (self.n_envs, 2) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions must be integers of shape ({self.n_envs}, 2), got {actions.dtype} {actions.shape}"
            )
        invalid = (actions < 0) | (actions >= len(MOVES))
        if invalid.any():
            raise ValueError(f"actions must lie in [0, {len(MOVES)}), got {actions[invalid]}")
        running = ~self._finished
        pos, agent_done, reward = bridge_transition(self._pos, self._agent_done, actions.astype(np.int64))
        self._pos = np.where(running[:, None, None], pos, self._pos)
        self._agent_done = np.where(running[:, None], agent_done, self._agent_done)
        self._steps += running
        self._finished = self._finished | self._agent_done.all(-1) | (self._steps >= BRIDGE_SPEC.episode_limit)
        info: dict[str, Any] = {}
        obs, state, avail = self._observation()
        return obs, state, avail, np.where(running, reward, 0.0).astype(np.float32), self._finished.copy(), info


# --- datasets ----------------------------------------------------------------------------

QUALITIES = ("optimal", "mixed")
DEFAULT_OPTIMAL_EPISODES = 500
HORIZON = BRIDGE_SPEC.episode_limit
N_ACTIONS = BRIDGE_SPEC.n_actions or 0
N_JOINT_ACTIONS = N_ACTIONS * N_ACTIONS
DONE_STATUS = ROWS * COLS
"""An agent's status is its cell ``row * COLS + col``, or DONE_STATUS once at its goal."""
N_STATUS = DONE_STATUS + 1
N_STATES = N_STATUS * N_STATUS
STEP_BACK = (LEFT, RIGHT)
"""The action that takes each agent away from its goal side of the bridge."""

Policy = Callable[[np.ndarray, int], np.ndarray]
"""``(obs [B, 2, 8], step t) -> actions [B, 2]``."""


def state_index(pos: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Joint state index ``[B]`` of positions ``[B, 2, 2]`` and done flags ``[B, 2]``."""
    status = np.where(done, DONE_STATUS, pos[..., 0] * COLS + pos[..., 1])
    return status[:, 0] * N_STATUS + status[:, 1]


def _observed_state_index(obs: np.ndarray) -> np.ndarray:
    """Joint state index from observations: an agent is done exactly when it stands on its goal."""
    pos = obs[:, 0, [[0, 1], [4, 5]]].astype(np.int64)
    return state_index(pos, (pos == GOALS).all(-1))


@dataclass(frozen=True)
class BridgeSolution:
    """``q[h, s, 5 * a0 + a1]``: the optimal return with ``h`` steps left from state ``s`` taking ``(a0, a1)``;
    ``random_values[h, s]``: the expected return of the uniformly random joint policy."""

    q: np.ndarray
    random_values: np.ndarray

    @property
    def values(self) -> np.ndarray:
        """``[H + 1, S]`` optimal return with ``h`` steps left."""
        return self.q.max(-1)


def solve_bridge(horizon: int = HORIZON) -> BridgeSolution:
    """Exact finite-horizon backward induction over all joint states and joint actions, for the
    optimal and for the uniformly random joint policy."""
    status = np.stack([np.arange(N_STATES) // N_STATUS, np.arange(N_STATES) % N_STATUS], axis=-1)  # [S, 2]
    done = status == DONE_STATUS
    pos = np.where(done[..., None], GOALS, np.stack([status // COLS, status % COLS], axis=-1))
    joint = np.arange(N_JOINT_ACTIONS)
    actions = np.stack([joint // N_ACTIONS, joint % N_ACTIONS], axis=-1)  # [A, 2]
    new_pos, new_done, reward = bridge_transition(
        np.repeat(pos, N_JOINT_ACTIONS, axis=0),
        np.repeat(done, N_JOINT_ACTIONS, axis=0),
        np.tile(actions, (N_STATES, 1)),
    )
    successor = state_index(new_pos, new_done).reshape(N_STATES, N_JOINT_ACTIONS)
    reward = reward.reshape(N_STATES, N_JOINT_ACTIONS)
    q = np.zeros((horizon + 1, N_STATES, N_JOINT_ACTIONS))
    random_values = np.zeros((horizon + 1, N_STATES))
    for steps_left in range(1, horizon + 1):
        q[steps_left] = reward + q[steps_left - 1].max(-1)[successor]
        random_values[steps_left] = (reward + random_values[steps_left - 1][successor]).mean(-1)
    return BridgeSolution(q=q, random_values=random_values)


START_STATE = int(state_index(STARTS[None], np.zeros((1, 2), dtype=bool))[0])


def reference_returns() -> dict[str, float]:
    """The dataset card's normalisation references: the exact expected returns from the start of
    the uniformly random joint policy (``random``) and of the optimal one (``expert``)."""
    solution = solve_bridge()
    return {
        "random": float(solution.random_values[HORIZON, START_STATE]),
        "expert": float(solution.values[HORIZON, START_STATE]),
    }


def first_action_allowed(yielder: int) -> np.ndarray:
    """``[25]`` mask of the first joint actions in which agent ``yielder`` steps back."""
    joint = np.arange(N_JOINT_ACTIONS)
    chosen = joint // N_ACTIONS if yielder == 0 else joint % N_ACTIONS
    return chosen == STEP_BACK[yielder]


def yielding_policy(solution: BridgeSolution, yielder: int) -> Policy:
    """The greedy optimal policy whose first joint action has agent ``yielder`` step back."""
    allowed = first_action_allowed(yielder)

    def act(obs: np.ndarray, step: int) -> np.ndarray:
        q = solution.q[HORIZON - step][_observed_state_index(obs)]
        if step == 0:
            q = np.where(allowed, q, -np.inf)
        joint = q.argmax(-1)  # the first maximum: lowest joint action index
        return np.stack([joint // N_ACTIONS, joint % N_ACTIONS], axis=-1)

    return act


def _rollout(policy: Policy, episodes: int) -> dict[str, np.ndarray]:
    """Run ``episodes`` episodes of ``policy`` and pack them as store fields."""
    env = BridgeEnv(episodes)
    obs, state, _ = env.reset(seed=0)
    obs_buf = np.zeros((episodes, HORIZON + 1) + obs.shape[1:], dtype=np.float32)
    state_buf = np.zeros((episodes, HORIZON + 1) + state.shape[1:], dtype=np.float32)
    action_buf = np.zeros((episodes, HORIZON, 2), dtype=np.int64)
    reward_buf = np.zeros((episodes, HORIZON), dtype=np.float32)
    lengths = np.full(episodes, HORIZON, dtype=np.int64)
    finished = np.zeros(episodes, dtype=bool)
    obs_buf[:, 0], state_buf[:, 0] = obs, state
    for step in range(HORIZON):
        actions = policy(obs, step)
        obs, state, _, reward, done, _ = env.step(actions)
        obs_buf[:, step + 1], state_buf[:, step + 1] = obs, state
        action_buf[:, step], reward_buf[:, step] = actions, reward
        lengths[done & ~finished] = step + 1
        finished = done
        if finished.all():
            break
    final_pos = obs[:, 0, [[0, 1], [4, 5]]]
    return pack_episodes(
        obs=obs_buf,
        state=state_buf,
        actions=action_buf,
        reward=reward_buf,
        terminated=(final_pos == GOALS).all((-2, -1)),
        lengths=lengths,
        avail=np.ones((episodes, HORIZON + 1, 2, N_ACTIONS), dtype=bool),
    )


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Lay packed datasets back to back, shifting the episode starts."""
    offsets = np.cumsum([0] + [part["reward"].shape[0] for part in parts[:-1]])
    merged = {name: np.concatenate([part[name] for part in parts]) for name in parts[0] if name != "episode_start"}
    merged["episode_start"] = np.concatenate(
        [part["episode_start"] + offset for part, offset in zip(parts, offsets, strict=True)]
    )
    return merged


def bridge_fields(quality: str, seed: int = 0, episodes: int | None = None) -> dict[str, np.ndarray]:
    """Store fields of a Bridge dataset; ``episodes`` is the (even) number of optimal episodes."""
    if quality not in QUALITIES:
        raise ValueError(f"unknown Bridge quality {quality!r}; expected one of {QUALITIES}")
    total = DEFAULT_OPTIMAL_EPISODES if episodes is None else episodes
    if total < 2 or total % 2:
        raise ValueError(f"bridge/{quality}: episodes must be a positive even number, got {total}")
    solution = solve_bridge()
    parts = [_rollout(yielding_policy(solution, yielder), total // 2) for yielder in (0, 1)]
    if quality == "mixed":
        rng = np.random.default_rng(seed)
        parts.append(_rollout(lambda obs, step: rng.integers(0, N_ACTIONS, size=(obs.shape[0], 2)), total))
    return _concatenate(parts)

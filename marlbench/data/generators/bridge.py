"""Bridge datasets in the manner of AlberDICE (:mod:`marlbench.envs.bridge`).

``optimal`` holds two deterministic optimal policies in equal shares: in one agent 0
steps back first (left, away from its goal side) to let agent 1 cross, in the other
agent 1 steps back first (right). Both come from exact backward induction over the
joint state (each agent's cell, or done) for the 50-step horizon; the first joint action
is restricted to those where the yielding agent steps back, and ties go to the lowest
joint action index ``5 * a0 + a1``. ``mixed`` adds as many episodes of a uniformly
random joint policy. The optimal episodes do not depend on ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from marlbench.data.episodes import pack_episodes
from marlbench.envs.bridge import BRIDGE_SPEC, COLS, GOALS, LEFT, RIGHT, ROWS, STARTS, BridgeEnv, bridge_transition

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

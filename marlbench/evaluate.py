"""Evaluation: N episodes stepped together, one batched policy forward per step.

Actions are decentralised (each agent's own observation and id) and deterministic by
default. On one-step discrete matrix games the evaluator also reports the exact expected
return of the stochastic joint policy, sum over joint actions of the product of the
agents' probabilities times the payoff, and those joint-action probabilities, because
the papers' matrix tables report them (InSPO Table 1, ComaDICE Table 26).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import torch

from marlbench.algorithm import Algorithm
from marlbench.envs.base import VecEnv


@dataclass
class EvalResult:
    return_mean: float
    return_std: float
    win_rate: float | None
    episodes: int
    expected_return: float | None = None
    joint_action_probs: dict[str, float] | None = None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        if self.expected_return is None:
            del data["expected_return"], data["joint_action_probs"]
        return data


def _to_tensor(array: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.asarray(array)).to(device)


@torch.no_grad()
def evaluate(algorithm: Algorithm, env: VecEnv, seed: int, deterministic: bool = True) -> EvalResult:
    """Run ``env.n_envs`` episodes to the end and summarise their returns."""
    device = algorithm.device
    obs, state, avail = env.reset(seed)
    n_envs = env.n_envs
    returns = np.zeros(n_envs, dtype=np.float64)
    finished = np.zeros(n_envs, dtype=bool)
    won = np.zeros(n_envs, dtype=bool)
    expected_return, joint_probs = _matrix_game_expectation(algorithm, env, obs, avail)
    for _ in range(env.spec.episode_limit):
        actions = algorithm.act(_to_tensor(obs, device), _to_tensor(avail, device), deterministic=deterministic)
        obs, state, avail, reward, done, info = env.step(actions.cpu().numpy())
        returns += np.where(finished, 0.0, reward)
        if "won" in info:
            won |= np.asarray(info["won"], dtype=bool) & ~finished
        finished |= np.asarray(done, dtype=bool)
        if finished.all():
            break
    if not finished.all():
        raise RuntimeError(
            f"{type(env).__name__} did not end its episodes within episode_limit={env.spec.episode_limit}"
        )
    return EvalResult(
        return_mean=float(returns.mean()),
        return_std=float(returns.std()),
        win_rate=float(won.mean()) if env.spec.has_wins else None,
        episodes=n_envs,
        expected_return=expected_return,
        joint_action_probs=joint_probs,
    )


def _matrix_game_expectation(
    algorithm: Algorithm, env: VecEnv, obs: np.ndarray, avail: np.ndarray | None
) -> tuple[float | None, dict[str, float] | None]:
    payoff = env.payoff
    if payoff is None:
        return None, None
    device = algorithm.device
    probs = algorithm.action_probs(
        _to_tensor(obs[:1], device), _to_tensor(None if avail is None else avail[:1], device)
    )
    per_agent = probs[0].double().cpu().numpy()
    joint = per_agent[0]
    for agent_probs in per_agent[1:]:
        joint = np.multiply.outer(joint, agent_probs)
    labels = [chr(ord("A") + a) for a in range(payoff.shape[0])]
    joint_probs = {
        "".join(labels[a] for a in index): float(joint[index])
        for index in itertools.product(range(payoff.shape[0]), repeat=payoff.ndim)
    }
    return float((joint * payoff).sum()), joint_probs

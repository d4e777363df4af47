"""AlberDICE is alternating best response: on a one-step cooperative game whose every joint
action is in the data, its final joint policy is a Nash equilibrium of the payoff.

The games are our own, registered under a suite name that is not ``matrix``, so the
algorithm's schedule comes from the run's length alone. With the former fixed schedule
(20,000 pretraining steps unless the suite was called ``matrix``) a 1,000- or 5,000-step run
on such a suite never left behaviour pretraining: the policies stayed at their near-uniform
initialisation, and greedy evaluation picked an arbitrary joint action (on the 3x3 game below,
(2, 1) with payoff 0, from which either agent gains 4 by switching alone).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from marlbench.algorithm import get_algorithm, resolve_config
from marlbench.data.sampler import Sampler
from marlbench.data.store import write_dataset
from marlbench.spec import EnvSpec
from marlbench.suites.matrix.games import one_step_fields

STEPS = 2000
BATCH = 64


def _train(payoff: np.ndarray, tmp_path, seed: int, steps: int = STEPS) -> np.ndarray:
    """AlberDICE on uniform data of every joint action of ``payoff``; per-agent probabilities ``[N, nA]``."""
    n_agents, n_actions = payoff.ndim, payoff.shape[0]
    spec = EnvSpec(
        n_agents=n_agents, obs_dim=1, state_dim=1, action_type="discrete", n_actions=n_actions, episode_limit=1
    )
    actions = np.repeat(np.array(list(itertools.product(range(n_actions), repeat=n_agents))), 100, axis=0)
    fields = one_step_fields(spec, actions, payoff[tuple(actions.T)])
    dataset = write_dataset(
        tmp_path / "game", fields, spec=spec, suite="own-games", task="game", quality="uniform", source={"test": 1}
    )
    cls = get_algorithm("alberdice")
    config = resolve_config(cls, "own-games", "game", "uniform", {"batch_size": BATCH}, total_steps=steps)
    torch.manual_seed(seed)
    algorithm = cls(spec, config, torch.device("cpu"))
    sampler = Sampler(dataset, seed=seed)
    for step in range(1, steps + 1):
        algorithm.update(sampler.sample(BATCH), step)
    obs = torch.ones(1, n_agents, 1)
    avail = torch.ones(1, n_agents, n_actions, dtype=torch.bool)
    return algorithm.action_probs(obs, avail)[0].detach().numpy()


def unilateral_gain(payoff: np.ndarray, probs: np.ndarray) -> float:
    """The most any one agent gains in expectation by switching alone to a pure action."""
    joint = probs[0]
    for agent_probs in probs[1:]:
        joint = np.multiply.outer(joint, agent_probs)
    value = float((joint * payoff).sum())
    gains = []
    for agent in range(payoff.ndim):
        against_others = np.moveaxis(payoff, agent, 0)
        for other in (probs[j] for j in range(payoff.ndim) if j != agent):
            against_others = np.tensordot(against_others, other, axes=([1], [0]))
        gains.append(float(against_others.max()) - value)
    return max(gains)


def test_unilateral_gain_finds_a_profitable_switch():
    payoff = np.array([[4.0, 4.0, 4.0], [0.0, 0.0, 9.0], [0.0, 0.0, 9.0]])
    pure = np.eye(3)
    assert unilateral_gain(payoff, np.stack([pure[0], pure[2]])) == pytest.approx(5.0)  # (0, 2): agent 0 gains
    assert unilateral_gain(payoff, np.stack([pure[1], pure[2]])) == pytest.approx(0.0)


def test_a_3x3_game_ends_in_an_equilibrium(tmp_path):
    """Against uniform play the first row is agent 0's best (mean 4 against 3), but once agent 1
    plays the last column agent 0 must switch: (row 0, column 2) is not an equilibrium."""
    payoff = np.array([[4.0, 4.0, 4.0], [0.0, 0.0, 9.0], [0.0, 0.0, 9.0]], dtype=np.float32)
    probs = _train(payoff, tmp_path, seed=0)
    assert unilateral_gain(payoff, probs) < 0.2
    assert probs.max(-1).min() > 0.75  # settled, not still uniform


@pytest.mark.slow
def test_a_three_agent_game_ends_in_an_equilibrium(tmp_path):
    """Measured with seed 1: 8 of the 9 best joint value, mass 0.99 on (0, 1, 1), no gain in switching."""
    payoff = np.array([[[0.0, 3.0], [2.0, 8.0]], [[9.0, 0.0], [4.0, 8.0]]], dtype=np.float32)
    probs = _train(payoff, tmp_path, seed=1)
    assert unilateral_gain(payoff, probs) < 0.2
    assert probs.max(-1).min() > 0.75

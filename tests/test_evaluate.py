"""The evaluator: batched episodes, deterministic decentralised actions, exact matrix-game expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marlbench.algorithm import Algorithm, AlgorithmConfig
from marlbench.evaluate import evaluate
from marlbench.suites.matrix import MatrixSuite
from marlbench.suites.matrix.games import PayoffGameEnv


class FixedPolicy(Algorithm):
    """Per-agent action probabilities fixed by the test; counts policy forwards."""

    name = "test-fixed"
    title = "fixed probabilities"

    def __init__(self, spec, probs: np.ndarray):
        super().__init__(spec, AlgorithmConfig(), torch.device("cpu"))
        self.probs = torch.tensor(probs, dtype=torch.float32)
        self.forwards = 0
        self.batch_sizes: list[int] = []

    def update(self, batch, step):
        return {}

    def act(self, obs, avail, deterministic=True):
        self.forwards += 1
        self.batch_sizes.append(obs.shape[0])
        probs = self.probs.expand(obs.shape[0], -1, -1)
        if deterministic:
            return probs.argmax(-1)
        return torch.distributions.Categorical(probs=probs).sample()

    def action_probs(self, obs, avail):
        return self.probs.expand(obs.shape[0], -1, -1)


def test_expected_return_is_the_exact_sum_over_joint_actions():
    suite = MatrixSuite()
    env = suite.make_env("xor", 8)
    policy = FixedPolicy(env.spec, np.array([[2 / 3, 1 / 3], [2 / 3, 1 / 3]]))
    result = evaluate(policy, env, seed=0)
    assert result.expected_return == pytest.approx(2 / 9)
    assert result.joint_action_probs == pytest.approx({"AA": 4 / 9, "AB": 2 / 9, "BA": 2 / 9, "BB": 1 / 9})
    assert result.return_mean == 0.0 and result.episodes == 8 and result.win_rate is None
    assert policy.forwards == 1 and policy.batch_sizes == [8]


def test_bridge_evaluation_batches_all_episodes_in_one_forward_per_step():
    env = MatrixSuite().make_env("bridge", 32)
    stay = np.zeros((2, 5))
    stay[:, 0] = 1.0
    policy = FixedPolicy(env.spec, stay)
    result = evaluate(policy, env, seed=0)
    assert policy.forwards == env.spec.episode_limit
    assert set(policy.batch_sizes) == {32}
    assert result.expected_return is None
    assert result.return_std == pytest.approx(0.0)
    assert result.return_mean < -1.0


def test_expected_return_of_a_three_agent_payoff_game():
    payoff = np.arange(8, dtype=np.float32).reshape(2, 2, 2)  # payoff[a, b, c] = 4a + 2b + c
    env = PayoffGameEnv(payoff, 4)
    probs = np.array([[0.4, 0.6], [1.0, 0.0], [0.25, 0.75]])
    result = evaluate(FixedPolicy(env.spec, probs), env, seed=0)
    assert result.expected_return == pytest.approx(4 * 0.6 + 0.75)
    assert result.joint_action_probs == pytest.approx(
        {"AAA": 0.1, "AAB": 0.3, "ABA": 0.0, "ABB": 0.0, "BAA": 0.15, "BAB": 0.45, "BBA": 0.0, "BBB": 0.0}
    )
    assert result.return_mean == 5.0  # the deterministic joint action (B, A, B)

"""CQL-MA: the discrete logsumexp gap over available actions, the importance-sampled logsumexp with
its log-density corrections, the losses on tiny hand-computed tensors, penalty-XOR outcomes,
and a state_dict round trip."""

from __future__ import annotations

import copy
import io
import math
import os

import numpy as np
import pytest
import torch
from tensor_helpers import set_constant_mixer, set_constant_output

from algorithms.cql import CQL, CQLConfig, discrete_cql_gap, sampled_logsumexp
from marlbench.data.sampler import Batch
from marlbench.nets import TanhGaussianPolicy
from marlbench.spec import EnvSpec
from marlbench.train import train

DISCRETE = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="discrete", n_actions=3, episode_limit=1)
CONTINUOUS = EnvSpec(n_agents=2, obs_dim=3, state_dim=4, action_type="continuous", action_dim=1, episode_limit=1)


def _batch(spec: EnvSpec, actions: torch.Tensor, reward, terminal, avail=None, next_avail=None) -> Batch:
    rows = actions.shape[0]
    obs = torch.ones(rows, spec.n_agents, spec.obs_dim)
    state = torch.ones(rows, spec.state_dim)
    return Batch(
        obs=obs, state=state, actions=actions, avail=avail, reward=torch.tensor(reward),
        terminal=torch.tensor(terminal), next_obs=obs, next_state=state, next_avail=next_avail,
        initial_obs=obs, initial_state=state, initial_avail=avail,
    )  # fmt: skip


def test_discrete_gap_excludes_unavailable_actions():
    q = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]]])  # [B=1, N=2, nA=3]
    actions = torch.tensor([[0, 1]])
    avail = torch.tensor([[[True, True, False], [True, True, True]]])
    gap = discrete_cql_gap(q, actions, avail)
    expected = [math.log(math.e**1 + math.e**2) - 1.0, math.log(2.0 + math.e**5) - 0.0]
    assert gap[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert discrete_cql_gap(q, actions, None)[0, 0].item() == pytest.approx(
        math.log(sum(math.e**k for k in (1, 2, 3))) - 1
    )


def test_sampled_logsumexp_divides_by_the_sampling_densities():
    """Two samples with Q = (0, log 3) drawn with densities (1/2, 1/4):
    log((e^0 / (1/2) + e^{log 3} / (1/4)) / 2) = log 7."""
    q = torch.tensor([[[0.0], [math.log(3.0)]]])  # [B=1, K=2, N=1]
    log_densities = torch.log(torch.tensor([[[0.5], [0.25]]]))
    assert sampled_logsumexp(q, log_densities).item() == pytest.approx(math.log(7.0), rel=1e-6)


def test_sampled_logsumexp_estimates_the_integral_from_uniform_and_policy_samples():
    """Q(a) = a on [-1, 1]: log int exp(a) da = log(e - 1/e). Uniform samples (density 1/2) and a
    tanh-Gaussian's samples with its log-densities both estimate it; without the density
    correction the policy samples would not."""
    torch.manual_seed(0)
    exact = math.log(math.e - 1.0 / math.e)
    uniform = torch.empty(1, 20000, 1).uniform_(-1.0, 1.0)
    log_uniform = torch.full_like(uniform, math.log(0.5))
    assert sampled_logsumexp(uniform, log_uniform).item() == pytest.approx(exact, abs=0.02)
    policy = TanhGaussianPolicy(1, 1, 1, hidden=(4,))
    set_constant_output(policy.net, [0.3, math.log(0.8)])  # pre-tanh mean 0.3, std 0.8
    actions, log_prob = policy.sample(torch.ones(20000, 1, 1))  # [K, N=1, A=1], [K, N=1]
    estimate = sampled_logsumexp(actions[..., 0].unsqueeze(0), log_prob.unsqueeze(0))
    assert estimate.item() == pytest.approx(exact, abs=0.03)
    uncorrected = torch.logsumexp(actions[..., 0], dim=0) - math.log(20000)
    assert abs(uncorrected.item() - exact) > 0.3


def test_discrete_losses_by_hand():
    """Q_i = (1, 2, 3) online, Q'_i = (4, 0, 1) target; mixer w = |(-0.5, 2)|, b = 0.3. Row 0 has
    action 2 unavailable at o and o' (next value max(4, 0) = 4 either way), row 1 action 0
    unavailable at o' (next value max(0, 1) = 1)."""
    gamma, alpha = 0.9, 1.0
    algo = CQL(DISCRETE, CQLConfig(gamma=gamma, alpha=alpha, hidden=(8,), mixer_hidden=4), torch.device("cpu"))
    set_constant_output(algo.q_nets[0], [1.0, 2.0, 3.0])
    set_constant_output(algo.q_targets[0], [4.0, 0.0, 1.0])
    for mixer in (algo.mixer, algo.mixer_target):
        set_constant_mixer(mixer, [-0.5, 2.0], 0.3)
    actions = torch.tensor([[0, 1], [2, 2]])
    avail = torch.ones(2, 2, 3, dtype=torch.bool)
    avail[0, :, 2] = False
    next_avail = avail.clone()
    next_avail[1, :, 0] = False
    losses = algo.update(_batch(DISCRETE, actions, [1.0, -1.0], [0.0, 0.0], avail, next_avail), step=1)

    w, b, q = [0.5, 2.0], 0.3, [1.0, 2.0, 3.0]
    next_value = [4.0, 1.0]
    td, gaps = [], []
    for row, joint in enumerate(actions.tolist()):
        q_tot = sum(w[i] * q[a] for i, a in enumerate(joint)) + b
        td.append(([1.0, -1.0][row] + gamma * (sum(w) * next_value[row] + b) - q_tot) ** 2)
        available = [k for k in range(3) if avail[row, 0, k]]
        gaps.append(sum(math.log(sum(math.exp(q[k]) for k in available)) - q[a] for a in joint))
    assert losses["td_loss"].item() == pytest.approx(np.mean(td), rel=1e-5)
    assert losses["cql_gap"].item() == pytest.approx(np.mean(gaps), rel=1e-5)
    assert all(value.dim() == 0 and not value.requires_grad for value in losses.values())


def test_discrete_greedy_policy_puts_zero_probability_on_unavailable_actions():
    algo = CQL(DISCRETE, CQLConfig(hidden=(8,)), torch.device("cpu"))
    set_constant_output(algo.q_nets[0], [1.0, 2.0, 3.0])
    obs, avail = torch.ones(1, 2, 1), torch.tensor([[[True, True, True], [True, True, False]]])
    assert algo.act(obs, avail).tolist() == [[2, 1]]
    assert algo.action_probs(obs, avail).tolist() == [[[0, 0, 1], [0, 1, 0]]]


def test_continuous_losses_with_action_independent_critics():
    """Critics constant in the action (online 1 and 3, target 2 and 5): the TD target is
    r + gamma (1 - d) (sum_i w'_i min(2, 5) + b'), and each critic's CQL gap per agent is the
    estimate of log int exp(c) da - c = log(mean_k 1 / q(a_k)), which, with the uniform
    samples' density 1/2 on [-1, 1] and the policy samples' densities, is close to log 2."""
    torch.manual_seed(0)
    gamma = 0.9
    config = CQLConfig(gamma=gamma, hidden=(8,), mixer_hidden=4, n_action_samples=2000)
    algo = CQL(CONTINUOUS, config, torch.device("cpu"))
    for net, value in zip([*algo.q_nets, *algo.q_targets], [1.0, 3.0, 2.0, 5.0], strict=True):
        set_constant_output(net, [value])
    for mixer in (algo.mixer, algo.mixer_target):
        set_constant_mixer(mixer, [0.5, -1.5], -0.2)
    reward, terminal = [1.0, 0.0], [0.0, 1.0]
    losses = algo.update(_batch(CONTINUOUS, torch.zeros(2, 2, 1), reward, terminal), step=1)
    w_sum, b = 2.0, -0.2
    targets = [r + gamma * (1 - d) * (w_sum * 2.0 + b) for r, d in zip(reward, terminal, strict=True)]
    expected_td = sum(np.mean([(w_sum * c + b - y) ** 2 for y in targets]) for c in (1.0, 3.0))
    assert losses["td_loss"].item() == pytest.approx(expected_td, rel=1e-5)
    # Two critics x two agents x log 2 (importance sampling: unbiased inside the log).
    assert losses["cql_gap"].item() == pytest.approx(4 * math.log(2.0), abs=0.1)
    assert losses["entropy_coef"].item() == pytest.approx(1.0)


def _final(make_request, **kwargs) -> dict:
    outcome = train(make_request(algo="cql", **kwargs))
    assert outcome.result["status"] == "completed"
    return outcome.result["final"]


def test_penalty_xor_outcomes(make_request):
    """{AB}: the penalty pushes down the unseen local actions, so the greedy policy is (A, B),
    return 1. {AA, AB, BA}: each agent's data is A 2/3, B 1/3; the penalty's minimum
    Q_i(A) - Q_i(B) = log 2 wins over the TD fit (which wants w_i (Q_i(B) - Q_i(A)) = 1 and
    gives up by shrinking w), so CQL-MA stays in distribution at (A, A): return 0, where the
    unpenalised decomposition (BCQ-MA) picks the out-of-distribution (B, B)."""
    assert _final(make_request, task="xor", quality="ab", seed=0, steps=250)["expected_return"] == 1.0
    three = _final(make_request, task="xor", quality="aa-ab-ba", seed=0, steps=500)
    assert three["expected_return"] == 0.0 and three["joint_action_probs"]["AA"] == 1.0


def test_penalty_xor_ab_ba_leaves_each_agent_indifferent():
    """{AB, BA}: each agent sees A and B equally often, so the CQL gap is smallest (2 log 2
    over the two agents) at Q_i(A) = Q_i(B), and the TD fit needs w_1 (Q_1(B) - Q_1(A)) =
    w_2 (Q_2(B) - Q_2(A)), which ties allow: on a batch with exactly half of each, CQL-MA
    learns near-ties. (With sampled minibatches the penalty of the more frequent joint action
    tilts both agents towards it at once, so the tiny margins always point at (A, B) or (B, A):
    see the slow test.)"""
    torch.manual_seed(0)
    spec = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="discrete", n_actions=2, episode_limit=1)
    algo = CQL(spec, CQLConfig(hidden=(64, 64)), torch.device("cpu"))
    actions = torch.tensor([[0, 1], [1, 0]]).repeat(32, 1)
    avail = torch.ones(64, 2, 2, dtype=torch.bool)
    batch = _batch(spec, actions, [1.0] * 64, [1.0] * 64, avail, avail)
    for step in range(1, 401):
        losses = algo.update(batch, step)
    q = algo.q_nets[0](torch.ones(1, 2, 1))[0].detach()
    assert losses["td_loss"].item() < 1e-3
    assert losses["cql_gap"].item() == pytest.approx(2 * math.log(2.0), abs=0.01)
    assert (q[:, 0] - q[:, 1]).abs().max().item() < 0.1


def test_state_dict_round_trip():
    torch.manual_seed(0)
    config = CQLConfig(hidden=(16,), mixer_hidden=8, n_action_samples=3)
    algo = CQL(CONTINUOUS, config, torch.device("cpu"))
    batch = _batch(CONTINUOUS, torch.rand(6, 2, 1) * 2 - 1, [0.5] * 6, [0.0] * 6)
    batch.obs, batch.next_obs = torch.randn(6, 2, 3), torch.randn(6, 2, 3)
    for step in range(3):
        algo.update(batch, step)
    assert algo.log_entropy_coef.item() != 0.0
    buffer = io.BytesIO()
    torch.save(algo.state_dict(), buffer)
    buffer.seek(0)
    restored = CQL(CONTINUOUS, config, torch.device("cpu"))
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    assert {"q_nets", "q_targets", "mixer", "mixer_target", "policy", "optimizer", "log_entropy_coef"} <= set(
        algo.state_dict()
    )
    assert all(p.is_leaf and not p.requires_grad for p in algo.q_targets.parameters())
    torch.manual_seed(1)
    after = algo.update(batch, 3)
    torch.manual_seed(1)
    after_restored = restored.update(copy.deepcopy(batch), 3)
    for key in after:
        assert torch.equal(after[key], after_restored[key]), key


MATRIX_DATASETS = [("xor", "ab"), ("xor", "ab-ba"), ("xor", "aa-ab-ba"), ("xor", "aa-ab-ba-bb"), ("mne", "uniform")]
MATRIX_DATASETS += [("mne", "biased")]
SEEDS = range(5)


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_matrix_games_over_five_seeds(make_request):
    """Standard profile, seeds 0-4 (numbers in the closing note of the BCQ/CQL work).

    - xor/ab: 1; xor/aa-ab-ba: (A, A), 0 (see test_penalty_xor_outcomes);
    - xor/ab-ba: near-ties (test_penalty_xor_ab_ba_leaves_each_agent_indifferent) whose signs come
      from the last minibatches: a batch with more (A, B) than (B, A) raises Q_1(A) and Q_2(B)
      together, so the greedy joint action is always a dataset one, (A, B) or (B, A): 1;
    - xor/aa-ab-ba-bb: the data are uniform per agent, so the penalty is indifferent and the TD
      fit's Q_i(B) - Q_i(A) < 0 decides: (A, A), 0;
    - mne/uniform: the penalty is indifferent, the additive fit ranks C first: (C, C), 20;
    - mne/biased: the penalty's log mu_i(A) - log mu_i(B) = log 8 in favour of A outweighs the
      fit of the rare (B, B) and (C, C): (A, A), 5 (the conservative, in-distribution answer).
    """
    returns = {
        (task, quality): [
            _final(make_request, task=task, quality=quality, seed=seed)["expected_return"] for seed in SEEDS
        ]
        for task, quality in MATRIX_DATASETS
    }
    for key, values in returns.items():
        print(f"cql {key}: {np.mean(values):.3f} +- {np.std(values):.3f}")
    assert returns["xor", "ab"] == [1.0] * 5
    assert returns["xor", "ab-ba"] == [1.0] * 5
    assert returns["xor", "aa-ab-ba"] == [0.0] * 5
    assert returns["xor", "aa-ab-ba-bb"] == [0.0] * 5
    assert returns["mne", "uniform"] == [20.0] * 5
    assert returns["mne", "biased"] == [5.0] * 5


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_continuous_bandit_over_five_seeds(make_request):
    """OMSD's bandit (r = a1 a2, data around (0.8, 0.8) and (-0.8, -0.8)), standard profile. The
    additive fit of a1 a2 gives each agent a U-shaped Q_i with equal modes, and the entropy-
    regularised unimodal actor settles between them: its mean action is near 0, and so is the
    deterministic return (factorised policies do not coordinate, OMSD Table 1)."""
    returns = [_final(make_request, task="bandit", quality="gmm", seed=seed)["return_mean"] for seed in SEEDS]
    print(f"cql bandit/gmm: {np.mean(returns):.3f} +- {np.std(returns):.3f} {returns}")
    assert all(abs(value) < 0.1 for value in returns)


@pytest.mark.slow
@pytest.mark.timeout(6 * 3600)
def test_hopper_medium_replay_standard_profile(tmp_path):
    """A generated Hopper `medium-replay` dataset (behaviour budget MARLBENCH_SLOW_BUDGET, default
    20000 SAC steps), the `standard` profile, 3 seeds: mean +- std of the final evaluation
    return. The policy must beat the dataset's worst episode on average (a learning floor
    far below the papers' numbers, which come from different, v2 MuJoCo data)."""
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("gymnasium_robotics")
    from marlbench.data.store import Dataset
    from marlbench.suites import get_suite
    from marlbench.train import RunRequest

    budget = int(os.environ.get("MARLBENCH_SLOW_BUDGET", "20000"))
    root = tmp_path / "data" / "mamujoco" / "hopper" / "medium-replay"
    get_suite("mamujoco").generate("hopper", "medium-replay", root, seed=0, budget=budget)
    statistics = Dataset.open(root).meta["statistics"]
    returns = []
    for seed in range(3):
        request = RunRequest(
            algo="cql", suite="mamujoco", task="hopper", quality="medium-replay", seed=seed,
            profile="standard", data=tmp_path / "data", results=tmp_path / "results", progress=False,
        )  # fmt: skip
        result = train(request).result
        assert result["status"] == "completed"
        returns.append(result["final"]["return_mean"])
    print(f"cql hopper/medium-replay: {np.mean(returns):.1f} +- {np.std(returns):.1f} {returns}; data {statistics}")
    assert np.mean(returns) > statistics["return_min"]

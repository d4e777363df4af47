"""Tests for marlbench.nets: shapes, per-agent independence, masking, tanh-Gaussian densities, mixers."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from marlbench.nets import (
    AgentMLP,
    CategoricalPolicy,
    LinearMixer,
    TanhGaussianPolicy,
    TwoLayerMixer,
    make_mixer,
    masked_logits,
    mlp,
)
from marlbench.nets.hotpath import flat_mlp, with_agent_ids
from marlbench.nets.policies import tanh_gaussian_log_density

B, N, O, S, NA, A = 5, 3, 4, 6, 5, 2


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- mlp / AgentMLP ---------------------------------------------------------


def test_mlp_layers() -> None:
    net = mlp(3, 2, (8, 16), torch.nn.Tanh)
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert net(torch.randn(7, 3)).shape == (7, 2)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("agent_id", [True, False])
def test_agent_mlp_shapes(shared: bool, agent_id: bool) -> None:
    net = AgentMLP(N, O, 7, hidden=(16, 16), agent_id=agent_id, shared=shared)
    assert net(torch.randn(B, N, O)).shape == (B, N, 7)
    assert net(torch.randn(2, B, N, O)).shape == (2, B, N, 7)
    assert net(torch.randn(N, O)).shape == (N, 7)
    with pytest.raises(ValueError):
        net(torch.randn(B, N + 1, O))


def test_agent_mlp_parameter_counts() -> None:
    shared = AgentMLP(N, O, 7, hidden=(16,), agent_id=False, shared=True)
    per_agent = AgentMLP(N, O, 7, hidden=(16,), agent_id=False, shared=False)
    n_shared = sum(p.numel() for p in shared.parameters())
    assert n_shared == (O * 16 + 16) + (16 * 7 + 7)
    assert sum(p.numel() for p in per_agent.parameters()) == N * n_shared


def test_per_agent_init_matches_linear_bounds() -> None:
    net = AgentMLP(N, 100, 50, hidden=(), agent_id=False, shared=False)
    layer = net.net[0]
    bound = 1.0 / 100**0.5
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert layer.weight.std() > 0.4 * bound  # actually spread over the range, not ~0


def test_per_agent_outputs_are_independent() -> None:
    net = AgentMLP(N, O, 4, hidden=(16, 16), agent_id=True, shared=False)
    x = torch.randn(B, N, O)
    y = net(x)
    x2 = x.clone()
    x2[:, 0] += 5.0
    y2 = net(x2)
    assert not torch.allclose(y[:, 0], y2[:, 0])
    torch.testing.assert_close(y[:, 1:], y2[:, 1:], rtol=0, atol=0)

    # Agent 1's output depends on no parameter slice of agent 0 (and does on its own).
    net(x)[:, 1].sum().backward()
    for p in net.parameters():
        assert p.grad is not None
        assert torch.all(p.grad[0] == 0) and torch.all(p.grad[2] == 0)
        assert p.grad[1].abs().sum() > 0


def test_shared_agents_are_coupled_through_parameters() -> None:
    net = AgentMLP(N, O, 4, hidden=(16,), agent_id=True, shared=True)
    net(torch.randn(B, N, O))[:, 1].sum().backward()
    first = net.net[0].weight.grad
    assert first[:, :O].abs().sum() > 0  # the shared obs weights get agent 1's gradient


@pytest.mark.parametrize("shared", [True, False])
def test_agent_id_distinguishes_identical_inputs(shared: bool) -> None:
    x = torch.randn(B, 1, O).expand(B, N, O)
    with_id = AgentMLP(N, O, 4, hidden=(16,), agent_id=True, shared=shared)(x)
    assert not torch.allclose(with_id[:, 0], with_id[:, 1])
    if shared:
        without = AgentMLP(N, O, 4, hidden=(16,), agent_id=False, shared=True)(x)
        torch.testing.assert_close(without[:, 0], without[:, 1])


# --- masked categorical -----------------------------------------------------


def _avail() -> torch.Tensor:
    avail = torch.rand(B, N, NA) > 0.5
    avail[..., 2] = True  # at least one available action per row
    avail[..., 0] = False  # action 0 never available
    return avail


def test_masked_logits_zero_probability_and_errors() -> None:
    logits = torch.randn(B, N, NA)
    avail = _avail()
    masked = masked_logits(logits, avail)
    assert torch.all(masked[~avail] == torch.finfo(torch.float32).min)
    torch.testing.assert_close(masked[avail], logits[avail], rtol=0, atol=0)
    probs = torch.softmax(masked, dim=-1)
    assert torch.all(probs[~avail] == 0)
    assert torch.all(probs[avail] > 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(B, N))
    assert masked_logits(logits, None) is logits
    bad = avail.clone()
    bad[1, 2] = False
    with pytest.raises(ValueError):
        masked_logits(logits, bad)


def test_categorical_policy_respects_mask() -> None:
    policy = CategoricalPolicy(N, O, NA, hidden=(16,))
    # Make action 0 (never available) by far the largest raw logit.
    with torch.no_grad():
        policy.net.net[-1].bias[0] = 1e4
    obs, avail = torch.randn(B, N, O), _avail()
    assert torch.all(policy.net(obs).argmax(-1) == 0)

    logits = policy.logits(obs, avail)
    assert logits.shape == (B, N, NA)
    probs = policy.probs(obs, avail)
    assert torch.all(probs[~avail] == 0)

    greedy = policy.act(obs, avail, deterministic=True)
    assert greedy.dtype == torch.int64 and greedy.shape == (B, N)
    assert torch.all(avail.gather(-1, greedy.unsqueeze(-1)))
    sampled = torch.stack([policy.act(obs, avail, deterministic=False) for _ in range(50)])
    assert torch.all(avail.expand(50, B, N, NA).gather(-1, sampled.unsqueeze(-1)))

    actions = greedy
    log_prob = policy.log_prob(obs, avail, actions)
    assert log_prob.shape == (B, N)
    torch.testing.assert_close(log_prob, probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1).log())

    entropy = policy.entropy(obs, avail)
    assert entropy.shape == (B, N) and torch.all(torch.isfinite(entropy))
    entropy.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters())

    with pytest.raises(ValueError):
        policy.act(obs, torch.zeros_like(avail), deterministic=True)


# --- tanh Gaussian ----------------------------------------------------------

LOW, HIGH = -2.0, 3.0


def _gaussian(shared: bool = True) -> TanhGaussianPolicy:
    return TanhGaussianPolicy(N, O, A, hidden=(16,), shared=shared, action_low=LOW, action_high=HIGH)


@pytest.mark.parametrize("shared", [True, False])
def test_tanh_gaussian_log_prob_matches_torch(shared: bool) -> None:
    policy = _gaussian(shared)
    obs = torch.randn(B, N, O)
    mean, log_std = policy(obs)
    assert mean.shape == log_std.shape == (B, N, A)
    loc, scale = (HIGH + LOW) / 2, (HIGH - LOW) / 2
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(), AffineTransform(loc, scale)])
    actions = loc + scale * (torch.rand(B, N, A) * 1.8 - 0.9)  # moderate: |tanh| <= 0.9
    expected = reference.log_prob(actions).sum(-1)
    torch.testing.assert_close(policy.log_prob(obs, None, actions), expected, rtol=0, atol=1e-4)


def test_tanh_gaussian_log_prob_finite_at_bounds() -> None:
    policy = _gaussian()
    obs = torch.randn(B, N, O)
    for edge in (LOW, HIGH):
        log_prob = policy.log_prob(obs, None, torch.full((B, N, A), edge))
        assert torch.all(torch.isfinite(log_prob))
        log_prob.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in policy.parameters())


def test_tanh_gaussian_sample_consistent_and_differentiable() -> None:
    policy = _gaussian()
    obs = torch.randn(200, N, O)
    actions, log_prob = policy.sample(obs)
    assert actions.shape == (200, N, A) and log_prob.shape == (200, N)
    assert torch.all((actions >= LOW) & (actions <= HIGH))
    y = (actions - (HIGH + LOW) / 2) / ((HIGH - LOW) / 2)
    inside = (y.abs() < 0.99).all(-1)
    assert inside.sum() > 100
    recomputed = policy.log_prob(obs, None, actions.detach())
    torch.testing.assert_close(log_prob[inside], recomputed[inside], rtol=0, atol=1e-3)

    actions.sum().backward()  # rsample: gradients reach the policy
    assert policy.net.net[0].weight.grad.abs().sum() > 0


def test_tanh_gaussian_clamps_and_act() -> None:
    policy = _gaussian()
    with torch.no_grad():
        policy.net.net[-1].bias[:A] = 50.0  # pre-tanh mean
        policy.net.net[-1].bias[A:] = -50.0  # log std
    obs = torch.randn(B, N, O)
    mean, log_std = policy(obs)
    assert torch.all(mean <= 9.0) and torch.all(log_std >= -5.0)

    det = policy.act(obs, None, deterministic=True)
    assert det.shape == (B, N, A)
    assert torch.all((det >= LOW) & (det <= HIGH))
    torch.testing.assert_close(det, LOW + (HIGH - LOW) / 2 * (torch.tanh(mean) + 1))
    stoch = policy.act(obs, None, deterministic=False)
    assert torch.all((stoch >= LOW) & (stoch <= HIGH))


def test_tanh_gaussian_rejects_empty_box() -> None:
    with pytest.raises(ValueError):
        TanhGaussianPolicy(N, O, A, action_low=1.0, action_high=1.0)


# --- mixers -----------------------------------------------------------------

MIXER_KINDS = ["linear", "two-layer"]


def _negate_parameters(mixer: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in mixer.parameters():
            p.copy_(-(torch.rand_like(p) + 0.1))


@pytest.mark.parametrize("kind", MIXER_KINDS)
@pytest.mark.parametrize("negative", [False, True])
def test_mixer_monotone(kind: str, negative: bool) -> None:
    mixer = make_mixer(kind, N, S)
    if negative:
        _negate_parameters(mixer)
    state = torch.randn(64, S) * 3
    values = (torch.randn(64, N) * 5).requires_grad_()

    weights = mixer.non_negative_weights(state)
    assert weights and all(torch.all(w >= 0) for w in weights)

    out = mixer(values, state)
    assert out.shape == (64,)
    (grad,) = torch.autograd.grad(out.sum(), values)
    assert torch.all(grad >= 0)

    with torch.no_grad():
        for i in range(N):
            bumped = values.clone()
            bumped[:, i] += 0.5
            assert torch.all(mixer(bumped, state) >= out - 1e-5)


def test_mixer_monotone_gradient_is_nonzero() -> None:
    # Guards against a trivially "monotone" mixer that ignores its values.
    for kind in MIXER_KINDS:
        values = torch.randn(B, N, requires_grad=True)
        make_mixer(kind, N, S)(values, torch.randn(B, S)).sum().backward()
        assert values.grad.abs().sum() > 0


def test_linear_mixer_formula() -> None:
    mixer = LinearMixer(N, S, hidden=64)
    assert mixer.body[0].out_features == 64
    state, values = torch.randn(B, S), torch.randn(B, N)
    w, b = mixer.weights(state), mixer.bias(state)
    assert w.shape == (B, N) and b.shape == (B,)
    torch.testing.assert_close(mixer(values, state), (w * values).sum(-1) + b)


def test_two_layer_mixer_shapes() -> None:
    mixer = TwoLayerMixer(N, S, embed_dim=8, hypernet_hidden=16)
    state = torch.randn(B, S)
    w1, w2 = mixer.non_negative_weights(state)
    assert w1.shape == (B, N, 8) and w2.shape == (B, 8)
    assert mixer(torch.randn(B, N), state).shape == (B,)
    assert mixer(torch.randn(2, B, N), torch.randn(2, B, S)).shape == (2, B)


def test_make_mixer() -> None:
    assert isinstance(make_mixer("linear", N, S), LinearMixer)
    assert isinstance(make_mixer("two-layer", N, S, embed_dim=8), TwoLayerMixer)
    with pytest.raises(ValueError, match="linear.*two-layer"):
        make_mixer("qatten", N, S)


# --- hot-path helpers ----------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_flat_mlp_with_agent_ids_equals_agent_mlp_forward(shared):
    net = AgentMLP(N, O + A, 3, hidden=(8, 8), shared=shared)
    obs, actions = torch.randn(B, N, O), torch.randn(B, N, A)
    flat = flat_mlp(net, with_agent_ids(torch.eye(N), obs, actions))
    torch.testing.assert_close(flat, net(torch.cat([obs, actions], dim=-1)))


def test_hot_path_log_probs_equal_the_policies():
    obs = torch.randn(B, N, O)
    gaussian = TanhGaussianPolicy(N, O, A, hidden=(16,), action_low=-2.0, action_high=2.0)
    actions = torch.empty(B, N, A).uniform_(-2.0, 2.0)
    actions[0, 0, 0] = 2.0  # on the bound
    out = flat_mlp(gaussian.net, with_agent_ids(torch.eye(N), obs))
    torch.testing.assert_close(gaussian.log_prob_of_output(out, actions, None), gaussian.log_prob(obs, None, actions))

    categorical = CategoricalPolicy(N, O, NA, hidden=(16,))
    avail = torch.rand(B, N, NA) < 0.6
    avail[..., 0] = True
    taken = torch.distributions.Categorical(probs=avail.float()).sample()
    logits = flat_mlp(categorical.net, with_agent_ids(torch.eye(N), obs))
    expected = categorical.log_prob(obs, avail, taken)
    torch.testing.assert_close(categorical.log_prob_of_output(logits, taken, avail), expected)


@pytest.mark.parametrize("kind", ["linear", "two-layer"])
def test_mixing_applies_the_mixer_and_detach_stops_only_the_mixer_gradient(kind):
    mixer = make_mixer(kind, N, S)
    values, state = torch.randn(B, N, requires_grad=True), torch.randn(B, S)
    mixing = mixer.mixing(state)
    torch.testing.assert_close(mixing(values), mixer(values, state))
    frozen = mixing.detach()(values).sum()
    frozen.backward()
    assert values.grad is not None and values.grad.abs().sum() > 0
    assert all(p.grad is None for p in mixer.parameters())


def test_tanh_gaussian_density_equals_the_policy_network():
    policy = TanhGaussianPolicy(1, 3, 2, (8,), agent_id=False, action_low=-2.0, action_high=2.0)
    obs = torch.randn(5, 1, 3)
    actions = torch.rand(5, 1, 2) * 4 - 2
    mean, log_std = policy(obs)
    ours = tanh_gaussian_log_density(mean, log_std, actions, loc=0.0, scale=2.0)
    assert torch.allclose(ours, policy.log_prob(obs, None, actions), atol=1e-5)

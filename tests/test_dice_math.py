"""The math under ComaDICE and OptDICE: f-divergences, Theorem 4.2's convexity, Proposition 4.1's gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.comadice import ComaDICE, ComaDICEConfig
from marlbench.data.sampler import Batch
from marlbench.divergences import DIVERGENCES, get_divergence
from marlbench.nets import LinearMixer, TwoLayerMixer
from marlbench.spec import EnvSpec


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_conjugate_is_the_supremum_over_non_negative_ratios(name):
    divergence = get_divergence(name)
    grid = torch.linspace(0.0, 40.0, 400_001)
    for y in torch.linspace(-5.0, 3.0, 33):
        numeric = (grid * y - divergence.f(grid)).max()
        assert float(divergence.conjugate(y)) == pytest.approx(float(numeric), abs=1e-6)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_inverse_derivative_inverts_the_derivative(name):
    divergence = get_divergence(name)
    x = torch.linspace(0.05, 6.0, 200, requires_grad=True)
    (derivative,) = torch.autograd.grad(divergence.f(x).sum(), x)
    assert torch.allclose(divergence.inverse_derivative(derivative), x.detach(), atol=1e-9)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_optimal_ratio_maximises_the_inner_problem(name):
    divergence = get_divergence(name)
    generator = torch.Generator().manual_seed(0)
    alpha = 3.0
    advantages = torch.randn(50, generator=generator) * 4.0
    ratio = divergence.optimal_ratio(advantages / alpha)
    grid = torch.linspace(0.0, 30.0, 300_001)
    for a, w in zip(advantages, ratio, strict=True):
        best = (-alpha * divergence.f(grid) + grid * a).max()
        assert float(-alpha * divergence.f(w) + w * a) >= float(best) - 1e-6
        assert float(-alpha * divergence.f(w) + w * a) == pytest.approx(float(alpha * divergence.conjugate(a / alpha)))


def _mixed_objective(mixer, nu, nu_initial, q, state, initial_state, divergence, alpha=5.0, gamma=0.9):
    """Theorem 4.2's L(nu, theta) with the local values as free variables."""
    advantage = mixer(q - nu, state)
    return (1 - gamma) * mixer(nu_initial, initial_state).mean() + (
        alpha * divergence.conjugate(advantage / alpha)
    ).mean()


@pytest.mark.parametrize("mixer_cls", [LinearMixer, TwoLayerMixer])
@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_mixed_objective_is_convex_in_nu_along_random_lines(mixer_cls, name):
    torch.manual_seed(1)
    n_agents, state_dim, batch = 3, 5, 16
    divergence = get_divergence(name)
    for _ in range(5):
        mixer = mixer_cls(n_agents, state_dim)
        with torch.no_grad():
            for param in mixer.parameters():
                param.mul_(2.0)
        state, initial_state = torch.randn(batch, state_dim), torch.randn(batch, state_dim)
        q = torch.randn(batch, n_agents) * 3
        nu, nu_initial = torch.randn(batch, n_agents), torch.randn(batch, n_agents)
        direction, direction_initial = torch.randn(batch, n_agents), torch.randn(batch, n_agents)
        ts = torch.linspace(-3, 3, 61)
        with torch.no_grad():
            values = torch.stack(
                [
                    _mixed_objective(
                        mixer,
                        nu + t * direction,
                        nu_initial + t * direction_initial,
                        q,
                        state,
                        initial_state,
                        divergence,
                    )
                    for t in ts
                ]
            )
        assert torch.isfinite(values).all()
        second_differences = values[2:] - 2 * values[1:-1] + values[:-2]
        assert (second_differences >= -1e-9 * values.abs().max()).all(), second_differences.min()


def _tiny_batch(spec: EnvSpec, batch: int = 6) -> Batch:
    generator = torch.Generator().manual_seed(3)
    obs = torch.randn(batch, spec.n_agents, spec.obs_dim, generator=generator)
    state = torch.randn(batch, spec.state_dim, generator=generator)
    return Batch(
        obs=obs,
        state=state,
        actions=torch.randint(0, spec.n_actions, (batch, spec.n_agents), generator=generator),
        avail=torch.ones(batch, spec.n_agents, spec.n_actions, dtype=torch.bool),
        reward=torch.randn(batch, generator=generator),
        terminal=torch.zeros(batch),
        next_obs=torch.randn(batch, spec.n_agents, spec.obs_dim, generator=generator),
        next_state=torch.randn(batch, spec.state_dim, generator=generator),
        next_avail=torch.ones(batch, spec.n_agents, spec.n_actions, dtype=torch.bool),
        initial_obs=torch.randn(batch, spec.n_agents, spec.obs_dim, generator=generator),
        initial_state=torch.randn(batch, spec.state_dim, generator=generator),
        initial_avail=torch.ones(batch, spec.n_agents, spec.n_actions, dtype=torch.bool),
    )


@pytest.mark.parametrize("mixer", ["linear", "two-layer"])
@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_nu_loss_gradient_matches_proposition_4_1(mixer, name):
    """grad L = (1 - gamma) E[grad nu_tot(s0)] + E[w* grad A_tot], with w* from the ratio formula."""
    torch.manual_seed(0)
    spec = EnvSpec(n_agents=3, obs_dim=4, state_dim=5, action_type="discrete", n_actions=3, episode_limit=10)
    config = ComaDICEConfig(hidden=(16, 16), mixer=mixer, f_divergence=name, alpha=0.7)
    algorithm = ComaDICE(spec, config, torch.device("cpu"))
    with torch.no_grad():
        for param in algorithm.nu.parameters():
            param.mul_(4.0)
    batch = _tiny_batch(spec)
    params = list(algorithm.nu.parameters()) + list(algorithm.mixer.parameters())
    losses = algorithm.losses(batch, 1)
    autograd = torch.autograd.grad(losses["nu_loss"], params)

    nu = algorithm.nu(batch.obs).squeeze(-1)
    q = algorithm.q(batch.obs).gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1).detach()
    advantage_tot = algorithm.mixer(q - nu, batch.state)
    initial_nu_tot = algorithm.mixer(algorithm.nu(batch.initial_obs).squeeze(-1), batch.initial_state)
    weights = get_divergence(name).optimal_ratio(advantage_tot.detach() / config.alpha)
    assert torch.equal(weights, losses["ratio_weights"])
    surrogate = (1 - config.gamma) * initial_nu_tot.mean() + (weights * advantage_tot).mean()
    closed_form = torch.autograd.grad(surrogate, params)
    for found, expected in zip(autograd, closed_form, strict=True):
        np.testing.assert_allclose(found.numpy(), expected.numpy(), rtol=1e-7, atol=1e-10)
    assert any(float(g.abs().max()) > 1e-6 for g in autograd)

"""The contract every registered algorithm keeps, on tiny specs of each action space it declares.

One parametrised file over the whole registry (a new algorithm is tested here without an
edit): finite 0-d logged values, action shapes and bounds, unavailable actions never
chosen, the state_dict round trip, determinism under a seed, and gradient isolation: in
every stage of every phase, each loss reaches exactly the parameter groups it names, and
no target network can be trained.
"""

from __future__ import annotations

import io

import pytest
import torch

from marlbench.algorithm import Algorithm, all_algorithms, resolve_config
from marlbench.data.sampler import Batch
from marlbench.spec import EnvSpec

B = 8
TOTAL_STEPS = 12
SPECS = {
    "discrete": EnvSpec(n_agents=2, obs_dim=3, state_dim=4, action_type="discrete", n_actions=4, episode_limit=5),
    "continuous": EnvSpec(
        n_agents=2, obs_dim=3, state_dim=4, action_type="continuous", action_dim=2, episode_limit=5, action_low=-2.0
    ),
}
CASES = [
    pytest.param(name, action_type, id=f"{name}-{action_type}")
    for name, cls in all_algorithms().items()
    for action_type in cls.action_types
]


def _avail(spec: EnvSpec, generator: torch.Generator, rows: int = B) -> torch.Tensor | None:
    if not spec.discrete:
        return None
    avail = torch.rand(rows, spec.n_agents, spec.n_actions, generator=generator) < 0.5
    avail[..., 0] |= ~avail.any(-1)  # at least one action available per agent
    return avail


def _actions(spec: EnvSpec, avail: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    if spec.discrete:
        return torch.multinomial(avail.flatten(0, 1).float(), 1, generator=generator).view(B, spec.n_agents)
    u = torch.rand(B, spec.n_agents, spec.action_dim, generator=generator)
    return spec.action_low + (spec.action_high - spec.action_low) * u


def tiny_batch(spec: EnvSpec, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    avail = _avail(spec, generator)
    n, o, s = spec.n_agents, spec.obs_dim, spec.state_dim
    return Batch(
        obs=randn(B, n, o),
        state=randn(B, s),
        actions=_actions(spec, avail, generator),
        avail=avail,
        reward=randn(B),
        terminal=(torch.arange(B) % 4 == 3).float(),
        next_obs=randn(B, n, o),
        next_state=randn(B, s),
        next_avail=_avail(spec, generator),
        initial_obs=randn(B, n, o),
        initial_state=randn(B, s),
        initial_avail=_avail(spec, generator),
    )


def build(name: str, action_type: str, seed: int = 0) -> Algorithm:
    cls = all_algorithms()[name]
    spec = SPECS[action_type]
    config = resolve_config(cls, "contract", "tiny", "random", {"batch_size": B}, total_steps=TOTAL_STEPS, spec=spec)
    torch.manual_seed(seed)
    return cls(spec, config, torch.device("cpu"))


def _train(algorithm: Algorithm, steps: range) -> list[dict[str, float]]:
    logged = []
    for step in steps:
        torch.manual_seed(1000 + step)
        values = algorithm.update(tiny_batch(algorithm.spec, seed=step), step)
        logged.append({key: float(value) for key, value in values.items()})
    return logged


def _every_step() -> range:
    return range(1, TOTAL_STEPS + 1)


@pytest.mark.parametrize(("name", "action_type"), CASES)
def test_every_phase_logs_finite_0d_values(name, action_type):
    algorithm = build(name, action_type)
    phases = algorithm.phase_starts()
    assert min(phases.values()) == 1 and max(phases.values()) <= TOTAL_STEPS
    for step in _every_step():
        torch.manual_seed(step)
        values = algorithm.update(tiny_batch(algorithm.spec, seed=step), step)
        assert values, f"{name} logged nothing at step {step}"
        for key, value in values.items():
            tensor = torch.as_tensor(value)
            assert tensor.dim() == 0 and not tensor.requires_grad, f"{name}: '{key}' is not a detached scalar"
            assert torch.isfinite(tensor), f"{name}: '{key}' = {float(tensor)} at step {step}"


@pytest.mark.parametrize(("name", "action_type"), CASES)
def test_actions_have_the_task_shape_and_respect_availability_and_bounds(name, action_type):
    algorithm = build(name, action_type)
    _train(algorithm, range(1, 3))
    spec = algorithm.spec
    generator = torch.Generator().manual_seed(7)
    rows = 64
    obs = torch.randn(rows, spec.n_agents, spec.obs_dim, generator=generator)
    avail = _avail(spec, generator, rows)
    for deterministic in (True, False):
        with torch.no_grad():
            actions = algorithm.act(obs, avail, deterministic=deterministic)
        if spec.discrete:
            assert actions.shape == (rows, spec.n_agents) and actions.dtype == torch.int64
            chosen = avail.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            assert chosen.all(), f"{name} chose an unavailable action (deterministic={deterministic})"
        else:
            assert actions.shape == (rows, spec.n_agents, spec.action_dim) and actions.is_floating_point()
            assert (actions >= spec.action_low).all() and (actions <= spec.action_high).all()
    if spec.discrete:
        try:
            probs = algorithm.action_probs(obs, avail)
        except NotImplementedError:
            return
        torch.testing.assert_close(probs.sum(-1), torch.ones(rows, spec.n_agents))
        assert (probs[~avail] == 0).all()


@pytest.mark.parametrize(("name", "action_type"), CASES)
def test_state_dict_round_trip_continues_identically(name, action_type):
    trained = build(name, action_type, seed=0)
    _train(trained, range(1, 4))
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    restored = build(name, action_type, seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    remaining = range(4, TOTAL_STEPS + 1)
    assert _train(restored, remaining) == _train(trained, remaining)


@pytest.mark.parametrize(("name", "action_type"), CASES)
def test_training_is_deterministic_under_a_seed(name, action_type):
    first = _train(build(name, action_type, seed=3), _every_step())
    second = _train(build(name, action_type, seed=3), _every_step())
    assert first == second


@pytest.mark.parametrize(("name", "action_type"), CASES)
def test_each_loss_reaches_exactly_the_groups_it_names(name, action_type):
    algorithm = build(name, action_type)
    if type(algorithm).update is not Algorithm.update:
        pytest.skip(f"{name} takes its own step (escape hatch): its losses are not declared")
    groups = {group.name: group.parameters for group in algorithm.param_groups()}
    for target in algorithm.targets():
        assert not any(p.requires_grad for p in target.target.parameters()), f"{name}: a target can be trained"
    every_parameter = [p for params in groups.values() for p in params]
    checked = 0
    for phase in algorithm.phases():
        for stage in phase.stages:
            torch.manual_seed(0)
            values = stage.losses(tiny_batch(algorithm.spec), phase.start)
            for loss_name, named in stage.trains.items():
                grads = torch.autograd.grad(values[loss_name], every_parameter, retain_graph=True, allow_unused=True)
                reached_params = {
                    id(p) for p, g in zip(every_parameter, grads, strict=True) if g is not None and g.any()
                }
                reached = {group for group, params in groups.items() if any(id(p) in reached_params for p in params)}
                assert reached == set(named), (
                    f"{name}, phase '{phase.name}', stage '{stage.name}': '{loss_name}' reaches {sorted(reached)}, "
                    f"names {sorted(named)}"
                )
                checked += 1
    assert checked, f"{name} declares no loss"

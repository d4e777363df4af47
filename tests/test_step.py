"""The core's training step (marlbench.step): groups, stages, phases, clipping, targets, logging."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marlbench.nets.targets import frozen_copy
from marlbench.step import ParamGroup, Phase, Stage, StepCore, TargetNet, _GroupedClip


def _nets() -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(0)
    return nn.Linear(3, 1), nn.Linear(3, 1)


def test_grouped_clip_equals_clip_grad_norm_per_group():
    groups = [[nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, 2))], [nn.Parameter(torch.zeros(4))]]
    grads = [torch.tensor([3.0, 0.0, 4.0]), torch.zeros(2, 2), torch.tensor([0.1, 0.1, 0.1, 0.1])]
    for param, grad in zip([p for g in groups for p in g], grads, strict=True):
        param.grad = grad.clone()
    _GroupedClip([(groups[0], 1.0), (groups[1], 1.0)])()
    # group 0 has norm 5 and is scaled to norm 1; group 1 (norm 0.2) is left alone.
    torch.testing.assert_close(groups[0][0].grad, torch.tensor([0.6, 0.0, 0.8]), atol=1e-6, rtol=0)
    torch.testing.assert_close(groups[1][0].grad, torch.full((4,), 0.1))


def test_grouped_clip_skips_parameters_without_gradient():
    reached, unreached = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    reached.grad = torch.tensor([6.0, 8.0])
    _GroupedClip([([reached, unreached], 2.0)])()
    torch.testing.assert_close(reached.grad, torch.tensor([1.2, 1.6]), atol=1e-5, rtol=0)
    assert unreached.grad is None


def test_a_stage_steps_only_its_groups_even_when_its_loss_reads_another_group():
    critic, actor = _nets()
    critic_before = [p.detach().clone() for p in critic.parameters()]
    x = torch.randn(8, 3)

    def actor_loss(batch, step):
        return {"actor_loss": critic(actor(x).expand(-1, 3)).mean()}

    core = StepCore(
        "test",
        [ParamGroup("critic", [critic], 1e-2), ParamGroup("actor", [actor], 1e-2)],
        [],
        [Phase("update", 1, (Stage("actor", actor_loss, {"actor_loss": ("actor",)}),))],
    )
    actor_before = [p.detach().clone() for p in actor.parameters()]
    core.step(None, 1)
    assert all(torch.equal(a, b) for a, b in zip(critic_before, critic.parameters(), strict=True))
    assert all(p.grad is None for p in critic.parameters())
    assert not any(torch.equal(a, b) for a, b in zip(actor_before, actor.parameters(), strict=True))
    assert not any(p in core.optimizer.state for p in critic.parameters())


def test_targets_follow_with_tau_only_in_phases_that_train_their_network():
    online, other = _nets()
    target = frozen_copy(online)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)
    x = torch.randn(8, 3)

    def other_loss(batch, step):
        return {"other_loss": other(x).square().mean()}

    def online_loss(batch, step):
        return {"online_loss": online(x).square().mean()}

    core = StepCore(
        "test",
        [ParamGroup("online", [online], 0.0), ParamGroup("other", [other], 1e-2)],
        [TargetNet(online, target, 0.25)],
        [
            Phase("pretrain", 1, (Stage("other", other_loss, {"other_loss": ("other",)}),)),
            Phase("main", 3, (Stage("online", online_loss, {"online_loss": ("online",)}),)),
        ],
    )
    assert core.phase_at(2).phase.name == "pretrain" and core.phase_at(3).phase.name == "main"
    before = [p.clone() for p in target.parameters()]
    core.step(None, 2)  # pretraining: the online network is not trained, its target stays
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters(), strict=True))
    core.step(None, 3)  # lr 0: online unchanged, target moves a quarter of the way back
    for moved, start, source in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(moved, start + 0.25 * (source - start))


def test_logged_values_are_detached_means_and_unlisted_values_are_not_minimised():
    net, _ = _nets()
    x = torch.randn(8, 3)

    def losses(batch, step):
        out = net(x).squeeze(-1)
        return {"loss": out.square().mean(), "outputs": out}

    core = StepCore(
        "test", [ParamGroup("net", [net], 1e-2)], [], [Phase("update", 1, (Stage("s", losses, {"loss": ("net",)}),))]
    )
    with torch.no_grad():
        expected_mean = net(x).mean()
    logged = core.step(None, 1)
    assert set(logged) == {"loss", "outputs"}
    assert all(value.dim() == 0 and not value.requires_grad for value in logged.values())
    torch.testing.assert_close(logged["outputs"], expected_mean)


def test_declarations_are_checked():
    net, _ = _nets()
    stage = Stage("s", lambda batch, step: {}, {"loss": ("missing",)})
    with pytest.raises(ValueError, match="unknown groups \\['missing'\\]"):
        StepCore("algo", [ParamGroup("net", [net], 1e-3)], [], [Phase("update", 1, (stage,))])
    ok = Stage("s", lambda batch, step: {}, {"loss": ("net",)})
    with pytest.raises(ValueError, match="first phase must start at step 1"):
        StepCore("algo", [ParamGroup("net", [net], 1e-3)], [], [Phase("late", 5, (ok,))])
    with pytest.raises(ValueError, match="names repeat"):
        StepCore("algo", [ParamGroup("net", [net], 1e-3), ParamGroup("net", [net], 1e-3)], [], [Phase("u", 1, (ok,))])

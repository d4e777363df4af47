"""The training step every algorithm shares: optimiser, backward, clipping, targets, logging.

An algorithm declares what it trains and the core takes the step:

- :class:`ParamGroup`: a named set of parameters with its learning rate and, optionally,
  its own gradient-norm clip;
- :class:`TargetNet`: a frozen copy that follows an online network by Polyak averaging
  with rate ``tau`` after every step of a phase that trains the online network;
- :class:`Stage`: one optimisation pass: a ``losses(batch, step) -> dict`` function and,
  for each loss it minimises, the parameter groups that loss trains. The stage's losses
  are summed and back-propagated once into exactly the stage's groups, so a loss must not
  reach a group it does not name (the contract tests check this for every algorithm).
  Entries of the dict that no stage minimises are logged only;
- :class:`Phase`: the stages of every step from ``start`` on (pretraining, then the main
  loop); most methods have one phase of one stage.

:class:`StepCore` builds one fused Adam over all groups (Adam is per-parameter, so this
equals one optimiser per network; a parameter without a gradient in a stage is left
alone), and per stage: zero the gradients, one backward, per-group clipping in a few
foreach calls, one optimiser step. After the stages, the phase's targets move toward
their online networks in one foreach call, and the logged values are detached means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from marlbench.data.sampler import Batch

LossFunction = Callable[[Batch, int], Mapping[str, torch.Tensor]]


def _parameters(owners: Sequence[nn.Module | nn.Parameter]) -> list[nn.Parameter]:
    """The distinct parameters of ``owners`` in order."""
    seen: dict[int, nn.Parameter] = {}
    for owner in owners:
        for param in [owner] if isinstance(owner, nn.Parameter) else owner.parameters():
            seen.setdefault(id(param), param)
    return list(seen.values())


@dataclass(frozen=True)
class ParamGroup:
    name: str
    """Referred to by the stages' ``trains`` tables."""
    owners: Sequence[nn.Module | nn.Parameter]
    """Modules (all their parameters) and single learnable parameters."""
    lr: float
    grad_clip: float | None = None
    """Maximum gradient norm of this group's parameters together; ``None``: no clipping."""

    @property
    def parameters(self) -> list[nn.Parameter]:
        return _parameters(self.owners)


@dataclass(frozen=True)
class TargetNet:
    online: nn.Module
    target: nn.Module
    tau: float
    """Polyak rate: ``target <- (1 - tau) target + tau online`` after every step."""


@dataclass(frozen=True)
class Stage:
    name: str
    losses: LossFunction
    trains: Mapping[str, tuple[str, ...]]
    """Loss name -> the parameter groups it trains."""

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(group for groups in self.trains.values() for group in groups))


@dataclass(frozen=True)
class Phase:
    name: str
    start: int
    """First step (1-based) of the phase; it lasts until the next phase starts."""
    stages: tuple[Stage, ...]
    targets: bool = True
    """Whether the targets of networks trained in this phase follow them after each step."""


@dataclass
class _StageRun:
    stage: Stage
    parameters: list[nn.Parameter]
    restrict: bool  # back-propagate into these parameters only (the others keep no gradient)
    clip: _GroupedClip | None


@dataclass
class _PhaseRun:
    phase: Phase
    stages: list[_StageRun]
    target_params: list[torch.Tensor] = field(default_factory=list)
    online_params: list[torch.Tensor] = field(default_factory=list)
    taus: list[float] = field(default_factory=list)


class StepCore:
    """Takes the training steps of one algorithm instance (see the module docstring)."""

    def __init__(self, owner: str, groups: Sequence[ParamGroup], targets: Sequence[TargetNet], phases: Sequence[Phase]):
        names = [group.name for group in groups]
        if len(set(names)) != len(names):
            raise ValueError(f"{owner}: parameter group names repeat: {names}")
        by_name = {group.name: group for group in groups}
        self.optimizer = torch.optim.Adam(
            [{"params": group.parameters, "lr": group.lr} for group in groups], fused=True
        )
        all_trained = {id(p) for group in groups for p in group.parameters}
        self.phases: list[_PhaseRun] = []
        for phase in sorted(phases, key=lambda p: p.start):
            runs = []
            for stage in phase.stages:
                unknown = sorted(set(stage.groups) - set(by_name))
                if unknown:
                    raise ValueError(f"{owner}: stage '{stage.name}' trains unknown groups {unknown}; known: {names}")
                stage_groups = [by_name[name] for name in stage.groups]
                parameters = [p for group in stage_groups for p in group.parameters]
                clipped = [(g.parameters, g.grad_clip) for g in stage_groups if g.grad_clip is not None]
                clip = _GroupedClip(clipped) if clipped else None
                runs.append(_StageRun(stage, parameters, len(parameters) < len(all_trained), clip))
            trained = {id(p) for run in runs for p in run.parameters}
            phase_run = _PhaseRun(phase, runs)
            for net in targets if phase.targets else ():
                online = list(net.online.parameters())
                if any(id(p) in trained for p in online):
                    phase_run.online_params += online
                    phase_run.target_params += list(net.target.parameters())
                    phase_run.taus += [net.tau] * len(online)
            self.phases.append(phase_run)
        if not self.phases or self.phases[0].phase.start > 1:
            raise ValueError(f"{owner}: the first phase must start at step 1")

    def phase_at(self, step: int) -> _PhaseRun:
        current = self.phases[0]
        for run in self.phases[1:]:
            if run.phase.start > step:
                break
            current = run
        return current

    def step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        phase = self.phase_at(step)
        logged: dict[str, torch.Tensor] = {}
        for run in phase.stages:
            values = run.stage.losses(batch, step)
            total = sum(values[name] for name in run.stage.trains)
            self.optimizer.zero_grad(set_to_none=True)
            assert isinstance(total, torch.Tensor)
            total.backward(inputs=run.parameters if run.restrict else None)
            if run.clip is not None:
                run.clip()
            self.optimizer.step()
            for name, value in values.items():
                value = value.detach()
                logged[name] = value if value.dim() == 0 else value.mean()
        if phase.target_params:
            with torch.no_grad():
                _polyak(phase.target_params, phase.online_params, phase.taus)
        return logged


class _GroupedClip:
    """``clip_grad_norm_(group, max_norm)`` for several groups in a few foreach calls and no
    host sync: each group's gradients are scaled by ``min(1, max_norm / (norm + 1e-6))``.
    Parameters the stage's losses did not reach (no gradient) are left out."""

    def __init__(self, groups: list[tuple[list[nn.Parameter], float]]):
        self.groups = groups
        self._layouts: dict[tuple[bool, ...], tuple[list[nn.Parameter], torch.Tensor, torch.Tensor]] = {}

    def _layout(self) -> tuple[list[nn.Parameter], torch.Tensor, torch.Tensor]:
        present = tuple(p.grad is not None for params, _ in self.groups for p in params)
        layout = self._layouts.get(present)
        if layout is None:
            members = [(g, p) for g, (params, _) in enumerate(self.groups) for p in params if p.grad is not None]
            device = members[0][1].device if members else None
            group_of = torch.tensor([g for g, _ in members], device=device, dtype=torch.long)
            max_norms = torch.tensor([norm for _, norm in self.groups], device=device)
            layout = self._layouts[present] = ([p for _, p in members], group_of, max_norms)
        return layout

    def __call__(self) -> None:
        parameters, group_of, max_norms = self._layout()
        if not parameters:
            return
        grads = [p.grad for p in parameters]
        squares = torch.stack(torch._foreach_norm(grads)).square()
        norms = torch.zeros_like(max_norms).index_add_(0, group_of, squares).sqrt_()
        scale = (max_norms / (norms + 1e-6)).clamp_(max=1.0)
        torch._foreach_mul_(grads, scale[group_of].unbind())


def _polyak(targets: list[torch.Tensor], online: list[torch.Tensor], taus: list[float]) -> None:
    """``target <- target + tau (online - target)`` for every pair, one foreach call per rate."""
    if len(set(taus)) == 1:
        torch._foreach_lerp_(targets, online, taus[0])
        return
    for tau in set(taus):
        pairs = [(t, o) for t, o, rate in zip(targets, online, taus, strict=True) if rate == tau]
        torch._foreach_lerp_([t for t, _ in pairs], [o for _, o in pairs], tau)

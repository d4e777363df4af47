"""Per-agent policies: masked categorical (discrete) and tanh-Gaussian (continuous).

Both expose one interface, so an algorithm written once serves either action space:
``log_prob(obs, avail, actions)``, ``log_prob_of_output(out, actions, avail)`` (from the
network's raw output, for hot paths that run the network themselves), ``sample(obs, avail)``
(actions and their log-probabilities, reparameterised where continuous) and
``act(obs, avail, deterministic)``. ``avail`` is ignored by the continuous policy.
:func:`policy_for_spec` picks the one a task needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Normal

from marlbench.nets.mlp import AgentMLP
from marlbench.spec import EnvSpec

# Actions are pulled this far inside [-1, 1] before atanh, so bounds map to finite u.
ATANH_EPS = 1e-6


def masked_logits(logits: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """Set logits of unavailable actions to ``finfo.min`` so softmax gives them exactly 0.

    ``avail`` is a bool (or 0/1) mask broadcastable to ``logits``; ``None`` means all available.
    Raises ValueError when some row has no available action (softmax would be meaningless).
    """
    if avail is None:
        return logits
    avail = avail.to(torch.bool)
    if not avail.any(dim=-1).all():
        raise ValueError("masked_logits: some row has no available action")
    return logits.masked_fill(~avail, torch.finfo(logits.dtype).min)


def tanh_gaussian_log_density(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor, loc: float, scale: float
) -> torch.Tensor:
    """Log density of ``loc + scale tanh(u)``, ``u ~ N(mean, exp(log_std))``, summed over the last dim
    (``TanhGaussianPolicy``'s density, without ``torch.distributions``' host-side checks); ``actions``
    on the box's bounds are pulled ``ATANH_EPS`` inside, as everywhere here."""
    y = ((actions - loc) / scale).clamp(-1.0 + ATANH_EPS, 1.0 - ATANH_EPS)
    u = torch.atanh(y)
    log_jacobian = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u)) + math.log(scale)
    log_normal = -0.5 * ((u - mean) * torch.exp(-log_std)).square() - log_std - 0.5 * math.log(2.0 * math.pi)
    return (log_normal - log_jacobian).sum(-1)


class CategoricalPolicy(nn.Module):
    """Per-agent categorical policy over ``n_actions`` with an availability mask.

    ``obs [..., N, O]``, ``avail [..., N, nA]`` bool or None, ``actions [..., N]`` int64.
    """

    def __init__(
        self,
        n_agents: int,
        obs_dim: int,
        n_actions: int,
        hidden: Sequence[int] = (256, 256),
        agent_id: bool = True,
        shared: bool = True,
    ):
        super().__init__()
        self.net = AgentMLP(n_agents, obs_dim, n_actions, hidden, agent_id, shared)

    def logits(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return masked_logits(self.net(obs), avail)

    def distribution(self, obs: torch.Tensor, avail: torch.Tensor | None) -> Categorical:
        return Categorical(logits=self.logits(obs, avail))

    def log_prob(self, obs: torch.Tensor, avail: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs, avail).log_prob(actions)

    def log_prob_of_output(self, out: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        """``log pi_i(a_i | o_i)`` ``[..., N]`` from raw logits (no all-masked-row check: no host sync)."""
        if avail is not None:
            out = out.masked_fill(~avail.bool(), torch.finfo(out.dtype).min)
        return out.log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return torch.softmax(self.logits(obs, avail), dim=-1)

    def sample(self, obs: torch.Tensor, avail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled actions ``[..., N]`` and their log-probabilities."""
        distribution = self.distribution(obs, avail)
        actions = distribution.sample()
        return actions, distribution.log_prob(actions)

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool) -> torch.Tensor:
        """Argmax over available actions, or a sample; ``[..., N]`` int64."""
        if deterministic:
            return self.logits(obs, avail).argmax(dim=-1)
        return self.distribution(obs, avail).sample()

    def entropy(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.distribution(obs, avail).entropy()


class TanhGaussianPolicy(nn.Module):
    """Per-agent Gaussian squashed by tanh and mapped affinely onto ``[action_low, action_high]``.

    The clamps follow OMIGA's reference actor (ZhengYinan-AIR/OMIGA, networks/network.py):
    pre-tanh mean to ``[-9, 9]`` and log std to ``[-5, 2]``; here both apply everywhere.
    ``obs [..., N, O]``, actions ``[..., N, A]``.
    """

    def __init__(
        self,
        n_agents: int,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (256, 256),
        agent_id: bool = True,
        shared: bool = True,
        action_low: float = -1.0,
        action_high: float = 1.0,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        mean_clamp: float = 9.0,
    ):
        super().__init__()
        if not action_high > action_low:
            raise ValueError(f"action_high ({action_high}) must exceed action_low ({action_low})")
        self.net = AgentMLP(n_agents, obs_dim, 2 * action_dim, hidden, agent_id, shared)
        self.action_dim = action_dim
        self.loc = (action_high + action_low) / 2
        self.scale = (action_high - action_low) / 2
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.mean_clamp = mean_clamp

    @classmethod
    def for_spec(
        cls, spec: EnvSpec, hidden: Sequence[int], shared: bool = True, single_agent: bool = False
    ) -> TanhGaussianPolicy:
        """The policy over ``spec``'s action box: every agent's (with one-hot ids), or with
        ``single_agent`` one agent's own network (``N = 1``, no id)."""
        assert spec.action_dim is not None
        n_agents, agent_id = (1, False) if single_agent else (spec.n_agents, True)
        return cls(
            n_agents,
            spec.obs_dim,
            spec.action_dim,
            hidden,
            agent_id=agent_id,
            shared=shared,
            action_low=spec.action_low,
            action_high=spec.action_high,
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh ``(mean, log_std)``, each ``[..., N, A]``, clamped."""
        return self.mean_log_std(self.net(obs))

    def mean_log_std(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The clamped pre-tanh ``(mean, log_std)`` from the network's raw output ``[..., 2A]``."""
        mean, log_std = out.chunk(2, dim=-1)
        return mean.clamp(-self.mean_clamp, self.mean_clamp), log_std.clamp(self.log_std_min, self.log_std_max)

    def squash(self, pre_tanh: torch.Tensor) -> torch.Tensor:
        """The action ``loc + scale tanh(u)`` of a pre-tanh value ``u``."""
        return self.loc + self.scale * torch.tanh(pre_tanh)

    def log_prob_pre_tanh(self, mean: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        """Log density of the action ``squash(u)`` for ``u ~ N(mean, exp(log_std))``, summed over A."""
        # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable for large |u|.
        u = pre_tanh
        log_jac = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        log_p = Normal(mean, log_std.exp()).log_prob(u) - log_jac - math.log(self.scale)
        return log_p.sum(dim=-1)

    def log_prob(self, obs: torch.Tensor, avail: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
        """``[..., N]``; finite even for actions on the bounds (clipped inside before atanh)."""
        return self.log_prob_of_output(self.net(obs), actions, avail)

    def log_prob_of_output(
        self, out: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log pi_i(a_i | o_i)`` ``[..., N]`` from the raw network output ``[..., N, 2A]``."""
        mean, log_std = self.mean_log_std(out)
        return tanh_gaussian_log_density(mean, log_std, actions, self.loc, self.scale)

    def probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError("a continuous policy has no action probabilities")

    def sample(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``(actions [..., N, A], log_prob [..., N])``."""
        mean, log_std = self(obs)
        u = Normal(mean, log_std.exp()).rsample()
        return self.squash(u), self.log_prob_pre_tanh(mean, log_std, u)

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool) -> torch.Tensor:
        """``squash(mean)`` when deterministic, else a sample."""
        if deterministic:
            return self.squash(self(obs)[0])
        return self.sample(obs)[0]


Policy = CategoricalPolicy | TanhGaussianPolicy


def policy_for_spec(spec: EnvSpec, hidden: Sequence[int] = (256, 256), shared: bool = True) -> Policy:
    """Each agent's policy over its own observation (and id): a masked categorical policy on
    discrete tasks, a tanh-Gaussian policy over the action box on continuous ones."""
    if spec.discrete:
        assert spec.n_actions is not None
        return CategoricalPolicy(spec.n_agents, spec.obs_dim, spec.n_actions, hidden, shared=shared)
    return TanhGaussianPolicy.for_spec(spec, hidden, shared=shared)

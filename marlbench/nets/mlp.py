"""Plain MLPs and per-agent MLPs over inputs shaped ``[..., N, in_dim]``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (256, 256),
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """``Linear -> activation`` for each hidden width, then a final ``Linear`` (no output activation)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class AgentLinear(nn.Module):
    """``N`` independent linear layers applied at once: ``[..., N, in] -> [..., N, out]``."""

    def __init__(self, n_agents: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_agents, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n_agents, out_dim))
        # Same distribution as nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) on the
        # weight and the bias both reduce to U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ni,nio->...no", x, self.weight) + self.bias


class AgentMLP(nn.Module):
    """An MLP per agent: ``[..., N, in_dim] -> [..., N, out_dim]``.

    ``shared=True`` uses one parameter set for all agents (parameter sharing);
    ``shared=False`` gives each agent its own parameters, evaluated in one batched pass.
    ``agent_id=True`` appends a one-hot agent id to every agent's input, as OMIGA and
    ComaDICE do for their shared per-agent networks (input ``obs_dim + n_agents``).
    """

    def __init__(
        self,
        n_agents: int,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256, 256),
        agent_id: bool = True,
        shared: bool = True,
    ):
        super().__init__()
        self.n_agents = n_agents
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.agent_id = agent_id
        self.shared = shared
        width = in_dim + (n_agents if agent_id else 0)
        if shared:
            self.net: nn.Module = mlp(width, out_dim, hidden)
        else:
            layers: list[nn.Module] = []
            for h in hidden:
                layers += [AgentLinear(n_agents, width, h), nn.ReLU()]
                width = h
            layers.append(AgentLinear(n_agents, width, out_dim))
            self.net = nn.Sequential(*layers)
        self.register_buffer("eye", torch.eye(n_agents), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-2:] != (self.n_agents, self.in_dim):
            raise ValueError(f"AgentMLP expects input [..., {self.n_agents}, {self.in_dim}], got {tuple(x.shape)}")
        if self.agent_id:
            ids = self.eye.to(x.dtype).expand(*x.shape[:-1], self.n_agents)
            x = torch.cat([x, ids], dim=-1)
        return self.net(x)

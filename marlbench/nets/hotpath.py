"""Helpers for the training hot path of the shared-network algorithms (OMIGA, ComaDICE, ICQ, BCQ, CQL).

The same parameters and arithmetic as ``AgentMLP.forward``, called functionally: each
network input is built once (with its one-hot agent ids) and reused by every network that
reads it, ReLUs run in place, and nothing reads a value back to the host. A policy's
``log_prob_of_output`` takes the raw output of ``flat_mlp(policy.net, ...)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.nets.mlp import AgentMLP


def with_agent_ids(eye: torch.Tensor, *parts: torch.Tensor) -> torch.Tensor:
    """``[B, N, *]`` pieces and the one-hot agent id (``eye``, ``[N, N]``) as one ``[B * N, in]`` input."""
    ids = eye.expand(*parts[0].shape[:-1], eye.shape[0])
    x = torch.cat([*parts, ids], dim=-1)
    return x.view(-1, x.shape[-1])


def flat_mlp(net: AgentMLP, x: torch.Tensor) -> torch.Tensor:
    """``net`` on an input from :func:`with_agent_ids`: ``[B * N, in] -> [B, N, out]``."""
    n_agents = net.n_agents
    for layer in net.net:
        if isinstance(layer, nn.Linear):
            x = F.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.ReLU):
            x = x.relu_()
        else:  # AgentLinear (shared=False)
            x = layer(x.view(-1, n_agents, x.shape[-1])).flatten(0, 1)
    return x.view(-1, n_agents, x.shape[-1])

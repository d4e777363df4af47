"""Helpers for the training hot path of the shared-network algorithms (OMIGA, ComaDICE).

The same parameters and arithmetic as ``AgentMLP.forward`` / the policies' ``log_prob``,
called functionally: each network input is built once (with its one-hot agent ids) and
reused by every network that reads it, ReLUs run in place, no ``torch.distributions``
argument checks, and nothing reads a value back to the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.nets.mlp import AgentMLP
from marlbench.nets.policies import CategoricalPolicy, TanhGaussianPolicy, tanh_gaussian_log_density


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


def categorical_log_prob(logits: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """``log pi_i(a_i | o_i)`` ``[B, N]`` of a masked categorical policy from its raw logits."""
    if avail is not None:  # as masked_logits, without its all-rows check (a host sync)
        logits = logits.masked_fill(~avail.bool(), torch.finfo(logits.dtype).min)
    return logits.log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def tanh_gaussian_log_prob(policy: TanhGaussianPolicy, out: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``TanhGaussianPolicy.log_prob`` (same clamps) from the raw network output ``[B, N, 2A]``."""
    mean, log_std = out.chunk(2, dim=-1)
    mean = mean.clamp(-policy.mean_clamp, policy.mean_clamp)
    log_std = log_std.clamp(policy.log_std_min, policy.log_std_max)
    return tanh_gaussian_log_density(mean, log_std, actions, policy.loc, policy.scale)


def policy_log_prob(
    policy: CategoricalPolicy | TanhGaussianPolicy,
    out: torch.Tensor,
    actions: torch.Tensor,
    avail: torch.Tensor | None,
) -> torch.Tensor:
    """``log pi_i(a_i | o_i)`` ``[B, N]`` of either policy from its network's raw output."""
    if isinstance(policy, TanhGaussianPolicy):
        return tanh_gaussian_log_prob(policy, out, actions)
    return categorical_log_prob(out, actions, avail)


class GroupedGradClip:
    """``clip_grad_norm_(group, max_norm)`` for several parameter groups in a few foreach calls:
    each group's gradients are scaled by ``min(1, max_norm / (norm + 1e-6))``."""

    def __init__(self, groups: list[list[nn.Parameter]], max_norm: float):
        self.parameters = [p for params in groups for p in params]
        self.max_norm = max_norm
        device = self.parameters[0].device
        self.group_of = torch.tensor([g for g, params in enumerate(groups) for _ in params], device=device)
        self.n_groups = len(groups)

    def __call__(self) -> None:
        grads = [p.grad for p in self.parameters]
        squares = torch.stack(torch._foreach_norm(grads)).square()
        norms = torch.zeros(self.n_groups, device=squares.device).index_add_(0, self.group_of, squares).sqrt_()
        scale = (self.max_norm / (norms + 1e-6)).clamp_(max=1.0)
        torch._foreach_mul_(grads, scale[self.group_of].unbind())

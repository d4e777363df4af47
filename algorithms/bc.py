"""Behaviour cloning (BC): each agent's policy imitates the dataset's local actions.

Maximises E_D[sum_i log pi_i(a_i | o_i)]. Discrete actions use a masked categorical
policy (unavailable actions get zero probability), continuous actions a tanh-Gaussian
policy. One network shared by all agents with a one-hot agent id, as in the OMIGA and
ComaDICE reference code (256-256 ReLU MLP, Adam, gradient clipping at 1.0); the learning
rate 1e-3 is ours (BC has no paper of its own here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.nets import CategoricalPolicy, TanhGaussianPolicy
from marlbench.spec import EnvSpec


@dataclass
class BCConfig(AlgorithmConfig):
    batch_size: int = 256
    learning_rate: float = 1e-3
    hidden: tuple[int, ...] = (256, 256)
    shared_parameters: bool = True
    grad_clip: float = 1.0


@register
class BC(Algorithm):
    name = "bc"
    title = "Behaviour cloning (per-agent, decentralised)"
    Config = BCConfig

    def __init__(self, spec: EnvSpec, config: BCConfig, device: torch.device):
        super().__init__(spec, config, device)
        self.policy: CategoricalPolicy | TanhGaussianPolicy
        if spec.discrete:
            self.policy = CategoricalPolicy(
                spec.n_agents, spec.obs_dim, spec.n_actions, config.hidden, shared=config.shared_parameters
            )
        else:
            self.policy = TanhGaussianPolicy(
                spec.n_agents,
                spec.obs_dim,
                spec.action_dim,
                config.hidden,
                shared=config.shared_parameters,
                action_low=spec.action_low,
                action_high=spec.action_high,
            )
        self.policy.to(device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate)

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        if self.spec.discrete:
            log_prob = self.policy.log_prob(batch.obs, batch.avail, batch.actions)
        else:
            log_prob = self.policy.log_prob(batch.obs, batch.actions)
        loss = -log_prob.mean()
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return {"bc_loss": loss.detach()}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        if self.spec.discrete:
            return self.policy.act(obs, avail, deterministic)
        return self.policy.act(obs, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        if not self.spec.discrete:
            return super().action_probs(obs, avail)
        return self.policy.probs(obs, avail)

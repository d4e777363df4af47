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
from marlbench.nets import DecentralisedPolicy
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
        self.policy = DecentralisedPolicy(spec, config.hidden, shared=config.shared_parameters).to(device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate, fused=True)

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        loss = -self.policy.log_prob(batch.obs, batch.avail, batch.actions).mean()
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return {"bc_loss": loss.detach()}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

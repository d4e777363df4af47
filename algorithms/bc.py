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
from marlbench.nets import policy_for_spec
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup


@dataclass
class BCConfig(AlgorithmConfig):
    batch_size: int = 256  # transitions per update
    learning_rate: float = 1e-3  # Adam
    hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    shared_parameters: bool = True  # one network for all agents (with agent ids)
    grad_clip: float = 1.0  # gradient-norm clip of the policy


@register
class BC(Algorithm):
    name = "bc"
    display_name = "BC"
    column_order = 0
    title = "Behaviour cloning (per-agent, decentralised)"
    Config = BCConfig
    loss_groups = {"bc_loss": ("policy",)}

    def __init__(self, spec: EnvSpec, config: BCConfig, device: torch.device):
        super().__init__(spec, config, device)
        self.policy = policy_for_spec(spec, config.hidden, shared=config.shared_parameters).to(device)

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup("policy", [self.policy], self.config.learning_rate, self.config.grad_clip)]

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        return {"bc_loss": -self.policy.log_prob(batch.obs, batch.avail, batch.actions).mean()}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

"""OptDICE: the naive multi-agent OptiDICE baseline of the ComaDICE paper (section 6.2).

OptiDICE (Lee et al., ICML 2021) run on the joint system without value factorisation:
one global nu(s) on the state, the advantage estimated from the sampled transition,
e(s, a, s') = r + gamma nu(s') - nu(s), and the same f-divergence machinery as ComaDICE
(``marlbench.divergences``):

- nu loss (OptiDICE's dual, the unfactorised form of ComaDICE's Proposition 4.1):
  (1 - gamma) E_{s0}[nu(s0)] + E_D[alpha f*(e / alpha)];
- ratio w* = max(0, (f')^{-1}(e / alpha));
- one global ratio weights every agent's behaviour cloning: max E_D[w* log pi_i(a_i | o_i)] for each i.

Settings the ComaDICE paper does not give for this baseline are ComaDICE's (Table 5):
alpha 10, soft-chi^2, Adam 1e-4, batch 128, 256-256 networks, gradient clipping 1.0.
Terminal transitions do not bootstrap. nu(s') keeps its gradient, as in OptiDICE's
single-sample estimator (no target network).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.divergences import DivergenceName, get_divergence
from marlbench.nets import DecentralisedPolicy, mlp
from marlbench.spec import EnvSpec


@dataclass
class OptDICEConfig(AlgorithmConfig):
    batch_size: int = 128
    learning_rate: float = 1e-4
    gamma: float = 0.99
    alpha: float = 10.0
    f_divergence: DivergenceName = "soft-chi2"
    hidden: tuple[int, ...] = (256, 256)
    grad_clip: float = 1.0


@register
class OptDICE(Algorithm):
    name = "optdice"
    title = "OptDICE (naive multi-agent OptiDICE, ComaDICE paper 6.2): one global nu(s), one global ratio"
    Config = OptDICEConfig

    def __init__(self, spec: EnvSpec, config: OptDICEConfig, device: torch.device):
        super().__init__(spec, config, device)
        self.divergence = get_divergence(config.f_divergence)
        self.nu = mlp(spec.state_dim, 1, config.hidden).to(device)
        self.policy = DecentralisedPolicy(spec, config.hidden).to(device)
        self.groups = {"nu": list(self.nu.parameters()), "policy": list(self.policy.parameters())}
        self.optimizer = torch.optim.Adam(
            [{"params": params} for params in self.groups.values()], lr=config.learning_rate, fused=True
        )

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        config = self.config
        nu = self.nu(batch.state).squeeze(-1)
        next_nu = self.nu(batch.next_state).squeeze(-1)
        initial_nu = self.nu(batch.initial_state).squeeze(-1)
        advantage = batch.reward + config.gamma * (1.0 - batch.terminal) * next_nu - nu
        scaled_advantage = advantage / config.alpha
        nu_loss = (1.0 - config.gamma) * initial_nu.mean() + (
            config.alpha * self.divergence.conjugate(scaled_advantage)
        ).mean()

        ratio_weights = self.divergence.optimal_ratio(scaled_advantage.detach())
        log_prob = self.policy.log_prob(batch.obs, batch.avail, batch.actions)
        policy_loss = -(ratio_weights.unsqueeze(-1) * log_prob).mean()

        self.optimizer.zero_grad()
        (nu_loss + policy_loss).backward()
        for params in self.groups.values():
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        self.optimizer.step()
        return {"nu_loss": nu_loss.detach(), "policy_loss": policy_loss.detach(), "ratio_mean": ratio_weights.mean()}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

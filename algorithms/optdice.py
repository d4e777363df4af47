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
from marlbench.nets import mlp, policy_for_spec
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup


@dataclass
class OptDICEConfig(AlgorithmConfig):
    batch_size: int = 128  # transitions per update
    learning_rate: float = 1e-4  # Adam, nu and pi
    gamma: float = 0.99  # discount
    alpha: float = 10.0  # weight of the f-divergence regulariser
    f_divergence: DivergenceName = "soft-chi2"  # f of the dual (ComaDICE's choices)
    hidden: tuple[int, ...] = (256, 256)  # MLP widths of nu and pi
    grad_clip: float = 1.0  # gradient-norm clip, per parameter group


@register
class OptDICE(Algorithm):
    name = "optdice"
    display_name = "OptDICE"
    column_order = 6
    title = "OptDICE (naive multi-agent OptiDICE, ComaDICE paper 6.2): one global nu(s), one global ratio"
    Config = OptDICEConfig
    loss_groups = {"nu_loss": ("nu",), "policy_loss": ("policy",)}

    def __init__(self, spec: EnvSpec, config: OptDICEConfig, device: torch.device):
        super().__init__(spec, config, device)
        self.divergence = get_divergence(config.f_divergence)
        self.nu = mlp(spec.state_dim, 1, config.hidden).to(device)
        self.policy = policy_for_spec(spec, config.hidden).to(device)

    def param_groups(self) -> list[ParamGroup]:
        lr, clip = self.config.learning_rate, self.config.grad_clip
        return [ParamGroup("nu", [self.nu], lr, clip), ParamGroup("policy", [self.policy], lr, clip)]

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
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
        return {"nu_loss": nu_loss, "policy_loss": policy_loss, "ratio_weights": ratio_weights}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

"""ComaDICE: offline cooperative MARL with stationary distribution correction estimation
(Bui et al., ICLR 2025; ``../shared/papers/comadice.md``, sections 4-5, Appendix B).

Local values nu_i(o_i) and local Q-functions q_i(o_i, a_i) are mixed by one monotonic
mixer M_theta (a hypernetwork on the global state with non-negative weights) into
nu_tot = M[nu] and A_tot = M[q - nu]. Per training step:

- Eq. 10, q loss: (M_s[q - nu] - r - gamma M_s'[nu(s')] + M_s[nu])^2, gradient to q only
  (Algorithm 1, line 5);
- Eq. 11, nu/theta loss: (1 - gamma) E_{s0}[M_s0[nu(s0)]] + E[alpha f*(M_s[q - nu] / alpha)],
  gradient to nu and theta, q fixed (lines 6-7); initial states s0 are the dataset's
  episode starts;
- Prop. 4.1 / section 4.3: w* = max(0, (f')^{-1}(A_tot / alpha)) from the mixed advantage;
- Eq. 12, local weighted BC: max E_D[w* log pi_i(a_i | o_i)] for every agent.

Settings the paper leaves open, taken from the authors' code: the bootstrap term
M_s'[nu(s')] uses target copies of nu and the mixer updated with tau (Table 5 lists tau);
terminal transitions do not bootstrap; the two loops of Algorithm 1 run interleaved, one
step of each per update, since the ratio networks do not depend on the policy; the three
parameter groups get separate gradient-norm clipping at 1.0.

Departures of the authors' code from the paper that we do not copy (REFERENCE.md): their
f-divergence term is applied per agent to w_i (q_i - nu_i) instead of to the mixed A_tot,
their initial-state term uses unmixed local values, their SMAC data carry return-to-go
rewards, and they add an OptiDICE-style normalisation multiplier (Table 5's "lambda
scale") that is absent from Eqs. 10-12. The KL generator follows Appendix B.5 with its
true inverse derivative (see ``marlbench.divergences``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.func import functional_call

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.divergences import DivergenceName, get_divergence
from marlbench.nets import AgentMLP, DecentralisedPolicy, make_mixer
from marlbench.nets.targets import frozen_copy
from marlbench.spec import EnvSpec


@dataclass
class ComaDICEConfig(AlgorithmConfig):
    """Defaults of Table 5 (Appendix B.2.1)."""

    batch_size: int = 128
    learning_rate: float = 1e-4
    gamma: float = 0.99
    tau: float = 0.005
    alpha: float = 10.0
    f_divergence: DivergenceName = "soft-chi2"
    mixer: Literal["linear", "two-layer"] = "linear"
    hidden: tuple[int, ...] = (256, 256)
    mixer_hidden: int = 64
    grad_clip: float = 1.0


class LocalQ(torch.nn.Module):
    """q_i(o_i, a_i): a head over actions on discrete tasks, an [o, a] input on continuous ones."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...]):
        super().__init__()
        self.discrete = spec.discrete
        if spec.discrete:
            self.net = AgentMLP(spec.n_agents, spec.obs_dim, spec.n_actions, hidden)
        else:
            self.net = AgentMLP(spec.n_agents, spec.obs_dim + spec.action_dim, 1, hidden)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return self.net(obs).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)


@register
class ComaDICE(Algorithm):
    name = "comadice"
    title = "ComaDICE (Bui et al. 2025): factorised stationary-distribution correction, local weighted BC"
    Config = ComaDICEConfig

    def __init__(self, spec: EnvSpec, config: ComaDICEConfig, device: torch.device):
        super().__init__(spec, config, device)
        self.divergence = get_divergence(config.f_divergence)
        mixer_size = {"hidden": config.mixer_hidden} if config.mixer == "linear" else {}
        self.nu = AgentMLP(spec.n_agents, spec.obs_dim, 1, config.hidden).to(device)
        self.q = LocalQ(spec, config.hidden).to(device)
        self.mixer = make_mixer(config.mixer, spec.n_agents, spec.state_dim, **mixer_size).to(device)
        self.policy = DecentralisedPolicy(spec, config.hidden).to(device)
        self.target_nu = frozen_copy(self.nu)
        self.target_mixer = frozen_copy(self.mixer)
        self.groups = {
            "q": list(self.q.parameters()),
            "nu": list(self.nu.parameters()) + list(self.mixer.parameters()),
            "policy": list(self.policy.parameters()),
        }
        self.optimizer = torch.optim.Adam(
            [{"params": params} for params in self.groups.values()], lr=config.learning_rate, foreach=True
        )

    def _frozen_mixer(self, values: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """M_theta with theta held fixed (Eq. 10 updates q only)."""
        frozen = {name: param.detach() for name, param in self.mixer.named_parameters()}
        return functional_call(self.mixer, frozen, (values, state))

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The three losses of one step (Eqs. 10, 11, 12) and the ratio weights w*."""
        config = self.config
        nu = self.nu(batch.obs).squeeze(-1)
        q = self.q(batch.obs, batch.actions)
        with torch.no_grad():
            next_nu_tot = self.target_mixer(self.target_nu(batch.next_obs).squeeze(-1), batch.next_state)
            bootstrap = batch.reward + config.gamma * (1.0 - batch.terminal) * next_nu_tot

        # Eq. 10: M_s[q - nu] + M_s[nu] regressed on r + gamma M_s'[nu(s')], gradient to q only.
        nu_fixed = nu.detach()
        mixed_q = self._frozen_mixer(q - nu_fixed, batch.state) + self._frozen_mixer(nu_fixed, batch.state)
        q_loss = (mixed_q - bootstrap).pow(2).mean()

        # Eq. 11: (1 - gamma) E[M_s0[nu(s0)]] + E[alpha f*(A_tot / alpha)], gradient to nu and theta.
        initial_nu_tot = self.mixer(self.nu(batch.initial_obs).squeeze(-1), batch.initial_state)
        scaled_advantage = self.mixer(q.detach() - nu, batch.state) / config.alpha
        nu_loss = (1.0 - config.gamma) * initial_nu_tot.mean() + (
            config.alpha * self.divergence.conjugate(scaled_advantage)
        ).mean()

        # Prop. 4.1: w* = max(0, (f')^{-1}(A_tot / alpha)); Eq. 12: local weighted BC.
        ratio_weights = self.divergence.optimal_ratio(scaled_advantage.detach())
        log_prob = self.policy.log_prob(batch.obs, batch.avail, batch.actions)
        policy_loss = -(ratio_weights.unsqueeze(-1) * log_prob).mean()
        return {"q_loss": q_loss, "nu_loss": nu_loss, "policy_loss": policy_loss, "ratio_weights": ratio_weights}

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        losses = self.losses(batch)
        self.optimizer.zero_grad()
        (losses["q_loss"] + losses["nu_loss"] + losses["policy_loss"]).backward()
        for params in self.groups.values():
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.optimizer.step()
        self._soft_update()
        return {
            "q_loss": losses["q_loss"].detach(),
            "nu_loss": losses["nu_loss"].detach(),
            "policy_loss": losses["policy_loss"].detach(),
            "ratio_mean": losses["ratio_weights"].mean(),
        }

    @torch.no_grad()
    def _soft_update(self) -> None:
        for target, source in ((self.target_nu, self.nu), (self.target_mixer, self.mixer)):
            torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), self.config.tau)

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

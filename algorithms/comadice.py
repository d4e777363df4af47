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

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.divergences import DivergenceName, get_divergence
from marlbench.nets import AgentMLP, make_mixer, policy_for_spec
from marlbench.nets.hotpath import flat_mlp, with_agent_ids
from marlbench.nets.targets import frozen_copy
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, TargetNet


@dataclass
class ComaDICEConfig(AlgorithmConfig):
    """Defaults of Table 5 (Appendix B.2.1)."""

    batch_size: int = 128  # transitions per update
    learning_rate: float = 1e-4  # Adam, every network
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target nu and mixer
    alpha: float = 10.0  # weight of the f-divergence regulariser (Eq. 11)
    f_divergence: DivergenceName = "soft-chi2"  # f of Eq. 11 (Appendix B.5)
    mixer: Literal["linear", "two-layer"] = "linear"  # M_theta (section 4.2)
    hidden: tuple[int, ...] = (256, 256)  # MLP widths of nu, q and pi
    mixer_hidden: int = 64  # hypernetwork width of the linear mixer
    grad_clip: float = 1.0  # gradient-norm clip, per parameter group (authors' code)


@register
class ComaDICE(Algorithm):
    name = "comadice"
    display_name = "ComaDICE"
    column_order = 10
    title = "ComaDICE (Bui et al. 2025): factorised stationary-distribution correction, local weighted BC"
    Config = ComaDICEConfig
    loss_groups = {"q_loss": ("q",), "nu_loss": ("nu",), "policy_loss": ("policy",)}

    def __init__(self, spec: EnvSpec, config: ComaDICEConfig, device: torch.device):
        super().__init__(spec, config, device)
        self.divergence = get_divergence(config.f_divergence)
        mixer_size = {"hidden": config.mixer_hidden} if config.mixer == "linear" else {}
        self.nu = AgentMLP(spec.n_agents, spec.obs_dim, 1, config.hidden).to(device)
        # q_i(o_i, a_i): a head over the actions on discrete tasks, an [o, a] input on continuous ones.
        q_in, q_out = (spec.obs_dim, spec.n_actions) if spec.discrete else (spec.obs_dim + spec.action_dim, 1)
        self.q = AgentMLP(spec.n_agents, q_in, q_out, config.hidden).to(device)
        self.mixer = make_mixer(config.mixer, spec.n_agents, spec.state_dim, **mixer_size).to(device)
        self.policy = policy_for_spec(spec, config.hidden).to(device)
        self.target_nu = frozen_copy(self.nu)
        self.target_mixer = frozen_copy(self.mixer)
        self._eye = torch.eye(spec.n_agents, device=device)

    def param_groups(self) -> list[ParamGroup]:
        lr, clip = self.config.learning_rate, self.config.grad_clip
        return [
            ParamGroup("q", [self.q], lr, clip),
            ParamGroup("nu", [self.nu, self.mixer], lr, clip),
            ParamGroup("policy", [self.policy], lr, clip),
        ]

    def targets(self) -> list[TargetNet]:
        return [
            TargetNet(self.nu, self.target_nu, self.config.tau),
            TargetNet(self.mixer, self.target_mixer, self.config.tau),
        ]

    def _local_q(self, batch: Batch) -> torch.Tensor:
        """q_i(o_i, a_i) of the dataset actions, ``[B, N]``."""
        if self.spec.discrete:
            out = flat_mlp(self.q, with_agent_ids(self._eye, batch.obs))
            return out.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        return flat_mlp(self.q, with_agent_ids(self._eye, batch.obs, batch.actions)).squeeze(-1)

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The three losses of one step (Eqs. 10, 11, 12) and the mean ratio weight w*."""
        config = self.config
        n_rows = batch.state.shape[0]
        # nu on the observations and on the initial observations in one pass; pi reads the first half.
        obs_input = with_agent_ids(self._eye, torch.cat([batch.obs, batch.initial_obs]))
        nu, initial_nu = flat_mlp(self.nu, obs_input).squeeze(-1).split(n_rows)
        q = self._local_q(batch)
        with torch.no_grad():
            next_nu = flat_mlp(self.target_nu, with_agent_ids(self._eye, batch.next_obs)).squeeze(-1)
            bootstrap = batch.reward + config.gamma * (1.0 - batch.terminal) * self.target_mixer(
                next_nu, batch.next_state
            )

        # Eq. 10: M_s[q - nu] + M_s[nu] regressed on r + gamma M_s'[nu(s')], gradient to q only.
        mixing = self.mixer.mixing(batch.state)
        frozen = mixing.detach()
        nu_fixed = nu.detach()
        q_loss = (frozen(q - nu_fixed) + frozen(nu_fixed) - bootstrap).square().mean()

        # Eq. 11: (1 - gamma) E[M_s0[nu(s0)]] + E[alpha f*(A_tot / alpha)], gradient to nu and theta.
        initial_nu_tot = self.mixer(initial_nu, batch.initial_state)
        scaled_advantage = mixing(q.detach() - nu) / config.alpha
        nu_loss = (1.0 - config.gamma) * initial_nu_tot.mean() + (
            config.alpha * self.divergence.conjugate(scaled_advantage)
        ).mean()

        # Prop. 4.1: w* = max(0, (f')^{-1}(A_tot / alpha)); Eq. 12: local weighted BC.
        ratio_weights = self.divergence.optimal_ratio(scaled_advantage.detach())
        policy_out = flat_mlp(self.policy.net, obs_input[: n_rows * self.spec.n_agents])
        log_prob = self.policy.log_prob_of_output(policy_out, batch.actions, batch.avail)
        policy_loss = -(ratio_weights.unsqueeze(-1) * log_prob).mean()
        return {"q_loss": q_loss, "nu_loss": nu_loss, "policy_loss": policy_loss, "ratio_weights": ratio_weights}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

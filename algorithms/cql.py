"""CQL-MA: multi-agent conservative Q-learning on local Q-values with a linear weighted decomposition.

The multi-agent CQL baseline of the OMIGA paper (Wang et al., NeurIPS 2023, Appendix C.2,
/work/shared/papers/omiga.md). Not the "MACQL" of the CFCQL paper, which penalises the
*joint* action values of a QMIX mixer with sampled joint actions: here the conservative
regulariser of CQL(H) is imposed on every *local* Q_i, and the local values are mixed by

    Q_tot(s, a) = sum_i w_i(s) Q_i(o_i, a_i) + b(s),    w_i(s) >= 0                    (OMIGA Eq. 1)

(``marlbench.nets.LinearMixer``), trained by TD on the dataset. The CQL(H) objective
(Kumar, Zhou, Tucker, Levine, "Conservative Q-Learning for Offline RL", NeurIPS 2020, Eq. 4)
with the multi-agent TD term is

    min_Q  alpha sum_i E_D[ log sum_{a} exp Q_i(o_i, a) - Q_i(o_i, a_i) ]
           + E_D[ (Q_tot(s, a) - y)^2 ],                                                 (CQL(H))

alpha = 1 (OMIGA Tables 5-6: "trade-off factor alpha (OMAR, CQL-MA) 1").

Discrete actions: Q_i is a head over the actions; the logsumexp runs over agent i's
*available* actions only (unavailable ones are not actions of the MDP at that step); the
target is DQN's ``y = r + gamma (1 - terminal) (sum_i w'_i(s') max_{available a} Q'_i(o'_i, a) + b'(s'))``
with target copies of Q and the mixer. The policy is greedy in Q_i over available actions
(``action_probs`` is that one-hot policy); no actor.

Continuous actions (CQL's SAC-based version): two local critics Q^1_i, Q^2_i
(each mixed by the one mixer), a tanh-Gaussian actor per agent, and the logsumexp estimated
by importance sampling (as in CQL's appendix and official code) from M uniform
actions and M policy actions at o_i and at o'_i, each weighted by its inverse density:

    log sum_a exp Q(o, a) ~ logsumexp_k [Q(o, a_k) - log q(a_k)] - log(3M),

q the uniform density ``(high - low)^-A`` or the policy's density (detached). The
``- log(3M)`` makes it an estimate of ``log int exp Q(o, a) da`` (the reference code omits this
constant; it does not change any gradient). The TD target uses the minimum of the two target
Q_tot at ``a'_i ~ pi_i(o'_i)``; the actor maximises ``min_j Q^j_tot(s, a~) - beta sum_i log pi_i(a~_i | o_i)``,
``a~_i ~ pi_i(o_i)`` reparameterised, with SAC's automatic entropy coefficient beta (target
entropy ``-action_dim`` per agent).

Settings from OMIGA Tables 5-6: alpha 1; Adam, learning rate 5e-4 for critics with the mixer
and for the actor; tau 0.005 (Polyak after every update); batch 128; gamma 0.99; hidden
256-256; mixer 64. From CQL's official code (aviralkumar2907/CQL; OMIGA is silent): M = 10
action samples of each kind; policy log-densities detached in the estimate; no entropy term
in the TD target (CQL's ``deterministic_backup``; CORL's ``backup_entropy=False``); the
entropy coefficient's learning rate equal to the actor's; temperature 1 in the logsumexp;
twin critics. Our choices where all are silent: one network per role shared by all agents
with a one-hot agent id; one mixer for both critics; the CQL term summed over agents (each
local Q_i carries the paper's alpha) and averaged over the batch; the squared TD error without
CQL Eq. 4's 1/2 (as CQL's code: alpha is relative to the plain MSE); no gradient clipping;
no behaviour-cloning warm-up of the actor (CQL's ``policy_eval_start``, absent from its paper).

Matrix games (standard profile, 5 seeds; no paper publishes CQL-MA on them, so these are our
measurements, asserted in tests/test_cql.py): penalty XOR {AB} 1; {AB, BA} 1: the penalty is
smallest at Q_i(A) = Q_i(B), and the minibatch noise tilts both agents towards the same data
joint action, so the (tiny) margins always select (A, B) or (B, A); {AA, AB, BA} 0: the
penalty's optimum Q_i(A) - Q_i(B) = log 2 beats the TD fit (the mixer weights shrink), so
CQL-MA stays in distribution at (A, A) where BCQ-MA takes (B, B); all four 0 (A, A). M-NE
uniform 20 (C, C); biased 5 (A, A), the conservative in-distribution answer (only InSPO
finds (C, C) there).

The losses touch disjoint parameters (the critics' TD and CQL terms; the actor's loss, which
reads the critics with their parameters frozen; the entropy coefficient), so one optimiser
step with three parameter groups trains them all; the actor sees the critics before this
step's update (CQL's code updates the actor first, too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.nets import AgentMLP, LinearMixer, TanhGaussianPolicy, masked_logits
from marlbench.nets.hotpath import flat_mlp, with_agent_ids
from marlbench.nets.targets import frozen_copy, parameters_frozen
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, TargetNet


@dataclass
class CQLConfig(AlgorithmConfig):
    batch_size: int = 128  # transitions per update (OMIGA Table 5)
    alpha: float = 1.0  # CQL trade-off factor (OMIGA Tables 5-6)
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target critics and mixer
    q_learning_rate: float = 5e-4  # critics Q_i and the mixer w, b
    policy_learning_rate: float = 5e-4  # actor and entropy coefficient (continuous)
    hidden: tuple[int, ...] = (256, 256)  # MLP widths of critics and actor
    mixer_hidden: int = 64  # hypernetwork width of the mixer
    shared_parameters: bool = True  # one network per role with a one-hot agent id (our choice)
    n_action_samples: int = 10  # M uniform and M + M policy samples (CQL official code)
    target_entropy: float | None = None  # per agent; None: -action_dim (SAC)
    initial_log_entropy_coef: float = 0.0  # beta = 1 at the start (CQL and CORL code)


def discrete_cql_gap(q_values: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """``logsumexp_{available a} Q_i(o_i, a) - Q_i(o_i, a_i)`` per agent: ``[B, N, nA]`` -> ``[B, N]``."""
    q_taken = q_values.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return torch.logsumexp(masked_logits(q_values, avail), dim=-1) - q_taken


def sampled_logsumexp(q_values: torch.Tensor, log_densities: torch.Tensor) -> torch.Tensor:
    """Importance-sampled ``log int exp Q(o, a) da`` over the sample dim 1: ``[B, K, N]`` -> ``[B, N]``."""
    return torch.logsumexp(q_values - log_densities, dim=1) - math.log(q_values.shape[1])


@register
class CQL(Algorithm):
    name = "cql"
    display_name = "CQL"
    column_order = 2
    title = "CQL-MA (multi-agent CQL of OMIGA App. C.2: CQL(H) on local Q_i, linear weighted decomposition)"
    Config = CQLConfig

    def __init__(self, spec: EnvSpec, config: CQLConfig, device: torch.device):
        super().__init__(spec, config, device)
        n, hidden, shared = spec.n_agents, config.hidden, config.shared_parameters
        self.mixer = LinearMixer(n, spec.state_dim, config.mixer_hidden).to(device)
        self.mixer_target = frozen_copy(self.mixer)
        if spec.discrete:
            assert spec.n_actions is not None
            self.q_nets = nn.ModuleList([AgentMLP(n, spec.obs_dim, spec.n_actions, hidden, shared=shared)]).to(device)
        else:
            assert spec.action_dim is not None
            q_in = spec.obs_dim + spec.action_dim
            self.q_nets = nn.ModuleList([AgentMLP(n, q_in, 1, hidden, shared=shared) for _ in range(2)]).to(device)
            self.policy = TanhGaussianPolicy.for_spec(spec, hidden, shared=shared).to(device)
            self.log_entropy_coef = nn.Parameter(torch.tensor(config.initial_log_entropy_coef, device=device))
            per_agent = -float(spec.action_dim) if config.target_entropy is None else config.target_entropy
            self._target_entropy = n * per_agent  # the joint entropy is the sum of the agents'
            self._log_uniform_density = -spec.action_dim * math.log(spec.action_high - spec.action_low)
            self._eye = torch.eye(n, device=device)
        self.q_targets = frozen_copy(self.q_nets)

    @property
    def loss_groups(self) -> dict[str, tuple[str, ...]]:
        if self.spec.discrete:
            return {"q_loss": ("q",)}
        return {"q_loss": ("q",), "policy_loss": ("policy",), "entropy_loss": ("entropy",)}

    def param_groups(self) -> list[ParamGroup]:
        cfg = self.config
        groups = [ParamGroup("q", [self.q_nets, self.mixer], cfg.q_learning_rate)]
        if not self.spec.discrete:
            groups.append(ParamGroup("policy", [self.policy], cfg.policy_learning_rate))
            groups.append(ParamGroup("entropy", [self.log_entropy_coef], cfg.policy_learning_rate))
        return groups

    def targets(self) -> list[TargetNet]:
        tau = self.config.tau
        return [TargetNet(self.q_nets, self.q_targets, tau), TargetNet(self.mixer, self.mixer_target, tau)]

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        if self.spec.discrete:
            return self._discrete_losses(batch)
        return self._continuous_losses(batch)

    def _discrete_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        with torch.no_grad():
            next_q = self.q_targets[0](batch.next_obs)
            if batch.next_avail is None:
                next_value = next_q.amax(-1)
            else:  # max over available actions; 0 for an agent with none (e.g. a final row)
                next_avail = batch.next_avail.bool()
                next_value = next_q.masked_fill(~next_avail, -math.inf).amax(-1).masked_fill(~next_avail.any(-1), 0.0)
            td_target = batch.reward + cfg.gamma * (1.0 - batch.terminal) * self.mixer_target(
                next_value, batch.next_state
            )
        q_values = self.q_nets[0](batch.obs)
        q_tot = self.mixer(q_values.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1), batch.state)  # OMIGA Eq. 1
        td_loss = F.mse_loss(q_tot, td_target)
        cql_gap = discrete_cql_gap(q_values, batch.actions, batch.avail).sum(-1).mean()  # CQL(H), per agent
        return {"q_loss": td_loss + cfg.alpha * cql_gap, "td_loss": td_loss, "cql_gap": cql_gap, "q_tot": q_tot}

    def _q_values(self, networks: nn.ModuleList, obs: torch.Tensor, actions: torch.Tensor) -> list[torch.Tensor]:
        """Each critic's local Q_i(o_i, a_i), ``[..., N]`` (one input with agent ids for all critics)."""
        q_input = with_agent_ids(self._eye, obs, actions)
        return [flat_mlp(net, q_input).view(obs.shape[:-1]) for net in networks]

    def _continuous_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        policy = self.policy
        n_samples, n_rows = cfg.n_action_samples, batch.obs.shape[0]
        weights, bias = self.mixer.parts(batch.state)

        with torch.no_grad():
            # One policy pass on [o; o'] serves the TD target's a' and the CQL samples at o and o'.
            mean, log_std = policy(torch.cat([batch.obs, batch.next_obs]))
            samples = torch.randn(2 * n_rows, 1 + n_samples, *mean.shape[1:], device=mean.device)
            pre_tanh = mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * samples  # [2B, 1 + M, N, A]
            policy_actions = policy.squash(pre_tanh)
            policy_log_prob = policy.log_prob_pre_tanh(mean.unsqueeze(1), log_std.unsqueeze(1), pre_tanh)

            # TD target: min over the two target Q_tot at a' ~ pi(o') (no entropy term, CQL's code).
            next_actions = policy_actions[n_rows:, 0]
            next_q = torch.stack(self._q_values(self.q_targets, batch.next_obs, next_actions))
            w_next, b_next = self.mixer_target.parts(batch.next_state)
            next_q_tot = ((w_next * next_q).sum(-1) + b_next).amin(0)
            td_target = batch.reward + cfg.gamma * (1.0 - batch.terminal) * next_q_tot

            # Samples for the logsumexp of CQL(H): uniform, pi(o), pi(o'), all evaluated at o.
            uniform = torch.empty_like(policy_actions[:n_rows, 1:]).uniform_(
                self.spec.action_low, self.spec.action_high
            )
            current_samples, next_samples = policy_actions[:n_rows, 1:], policy_actions[n_rows:, 1:]
            sampled_actions = torch.cat([uniform, current_samples, next_samples], dim=1)  # [B, 3M, N, A]
            current_log_prob, next_log_prob = policy_log_prob[:n_rows, 1:], policy_log_prob[n_rows:, 1:]
            log_densities = torch.cat(
                [torch.full_like(current_log_prob, self._log_uniform_density), current_log_prob, next_log_prob], dim=1
            )
            sampled_obs = batch.obs.unsqueeze(1).expand(-1, 3 * n_samples, -1, -1)

        # Critics, CQL(H): TD on each Q^j_tot plus alpha times the gap of every local Q^j_i.
        td_loss = cql_gap = batch.obs.new_zeros(())
        q_data = self._q_values(self.q_nets, batch.obs, batch.actions)
        q_sampled = self._q_values(self.q_nets, sampled_obs, sampled_actions)
        for q_taken, q_at_samples in zip(q_data, q_sampled, strict=True):
            q_tot = (weights * q_taken).sum(-1) + bias  # OMIGA Eq. 1
            td_loss = td_loss + F.mse_loss(q_tot, td_target)
            # CQL(H) per agent: sampled logsumexp minus the data action's value, summed over agents.
            cql_gap = cql_gap + (sampled_logsumexp(q_at_samples, log_densities) - q_taken).sum(-1).mean()

        # Actor (SAC on the mixed critics as they are before this step, their parameters frozen):
        # max min_j Q^j_tot(s, a~) - beta sum_i log pi_i(a~_i | o_i); then SAC's entropy coefficient.
        new_actions, new_log_prob = policy.sample(batch.obs)
        entropy_coef = self.log_entropy_coef.exp().detach()
        with parameters_frozen(self.q_nets):
            q_new = torch.stack(self._q_values(self.q_nets, batch.obs, new_actions))  # [2, B, N]
        q_tot_new = ((weights.detach() * q_new).sum(-1) + bias.detach()).amin(0)
        policy_loss = (entropy_coef * new_log_prob.sum(-1) - q_tot_new).mean()
        entropy_loss = -(self.log_entropy_coef * (new_log_prob.sum(-1).detach() + self._target_entropy)).mean()
        return {
            "q_loss": td_loss + cfg.alpha * cql_gap,
            "policy_loss": policy_loss,
            "entropy_loss": entropy_loss,
            "td_loss": td_loss,
            "cql_gap": cql_gap,
            "entropy_coef": entropy_coef,
            "q_tot": q_tot_new,
        }

    def _greedy_discrete(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return masked_logits(self.q_nets[0](obs), avail).argmax(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        if self.spec.discrete:
            return self._greedy_discrete(obs, avail)
        return self.policy.act(obs, avail, deterministic)

    @torch.no_grad()
    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        if not self.spec.discrete:
            return super().action_probs(obs, avail)
        assert self.spec.n_actions is not None
        return F.one_hot(self._greedy_discrete(obs, avail), self.spec.n_actions).to(obs.dtype)

"""ICQ: implicit constraint Q-learning, multi-agent (MA-ICQ), discrete and continuous.

Yang, Ma, Li, Lu, Zhang, Zhang, Zhao, "Believe What You See: Implicit Constraint Approach
for Offline Multi-Agent Reinforcement Learning", NeurIPS 2021 (Sections 4 and 5). Reference
code for its SMAC settings: thu-rllab/CFCQL (``icq_learner.py``, REFERENCE.md).

ICQ keeps every value estimate on the data. The constrained optimal policy of the
behaviour-regularised problem is ``pi*(a|s) = mu(a|s) exp(Q(s, a) / alpha) / Z(s)``, so both
the Bellman target and the policy improvement become expectations under the behaviour
policy mu reweighted by ``exp(Q / alpha) / Z``; ICQ estimates the normaliser Z by a softmax
over the mini-batch (``weights = B softmax_batch(x / alpha)``, mean weight 1):

- critic (the ICQ operator), with the linear decomposition of MA-ICQ
  ``Q_tot(s, a) = sum_i w_i(s) Q_i(o_i, a_i) + b(s)``, ``w_i >= 0``:
  ``min E_D[(Q_tot(s, a) - r - gamma rho(s', a') Q-bar_tot(s', a'))^2]``,
  ``rho = B softmax_batch(Q-bar_tot(s', a') / alpha)``, ``a' ~ mu``;
- actor (MA-ICQ's decomposed policy objective): the joint advantage of the linear
  decomposition is ``sum_i w_i(s) A_i(o_i, a_i)``, so ``exp(A_tot / alpha)`` factorises and
  each agent maximises ``E_D[B softmax_batch(w_i(s) A_i / alpha) log pi_i(a_i | o_i)]`` with
  ``A_i = Q_i(o_i, a_i) - E_{pi_i}[Q_i(o_i, .)]``.

Discrete actions: Q_i is a head over the actions, pi_i a masked categorical (unavailable
actions get probability 0, the baseline ``E_{pi_i}[Q_i]`` is exact). Continuous actions
(ICQ's MaMuJoCo column in OMIGA's and ComaDICE's tables): Q_i takes ``[o_i, a_i]``, pi_i is a
tanh-Gaussian and ``E_{pi_i}[Q_i]`` is a mean over ``baseline_samples`` policy samples.

Settings: the Lagrangian coefficient alpha = 10 for the critic and the actor (OMIGA,
Tables 5-6, "Lagrangian coefficient (ICQ) 10"); Adam, learning rate 5e-4, batch 128,
gamma 0.99, Polyak tau 0.005, 256-256 MLPs and a 64-unit mixer (OMIGA Tables 5-6, "shared
parameters" of all baselines). Where the papers are silent: one network per role shared by
all agents with a one-hot id, as in the reference; gradient-norm clipping at 1.0 per network
group (our choice, as OMIGA's reference); ``baseline_samples`` 10 (our choice).

Departures, and why:

- single-step TD targets on transitions. The reference uses recurrent agents and TD(lambda)
  (lambda 0.8) over whole episodes; marlbench's sampler serves transitions and the
  networks see one observation.
- the next action a' ~ mu of the critic target. ICQ takes a' from the data (the next
  transition's action). marlbench's ``Batch`` carries no next actions, so a' is drawn from
  a per-agent behaviour model mu-hat_i(a'_i | o'_i) fitted by maximum likelihood on the same
  batches (a masked categorical or a tanh-Gaussian). With ``next_actions`` in the batch
  this model could go.
- the batch softmax of the critic runs over the non-terminal rows only (terminal rows do
  not bootstrap, so their next-state values would only distort the estimate of Z).
- the reference's temperatures are 1000 (critic) and 0.1 (actor), and it multiplies the
  mixer weight outside the exponential of the actor weight; we follow OMIGA's tables
  (alpha = 10 for both) and the paper's decomposition (w_i inside the exponential).

On the one-step matrix games every transition is terminal, so the critic fits the payoff by
the linear decomposition (as OMIGA's does) and alpha = 10 keeps each policy close to its
behaviour marginal, tilted by exp(w_i A_i / 10). Measured (standard profile, expected
return, mean over 5 seeds, BC's in brackets): XOR {AB} 1.00 (1.00), {AB, BA} 0.00 (0.00),
{AA, AB, BA} 0.21 (0.22), all four 0.05 (0.00); M-NE uniform 5.03 (3.90), biased 3.70
(3.44); the 2-D bandit 0.01 (0.02). The coordinated optimum of XOR is never found.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.nets import AgentMLP, LinearMixer, masked_logits, policy_for_spec
from marlbench.nets.hotpath import flat_mlp, with_agent_ids
from marlbench.nets.targets import frozen_copy
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, TargetNet


@dataclass
class ICQConfig(AlgorithmConfig):
    batch_size: int = 128  # transitions per update (OMIGA Table 5)
    critic_alpha: float = 10.0  # Lagrangian coefficient of the critic target (OMIGA Tables 5-6)
    actor_alpha: float = 10.0  # Lagrangian coefficient of the policy weights (OMIGA Tables 5-6)
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target Q and mixer
    q_learning_rate: float = 5e-4  # Q_i and the mixer
    policy_learning_rate: float = 5e-4  # pi_i
    behaviour_learning_rate: float = 5e-4  # our choice: the model that stands in for the data's next action
    hidden: tuple[int, ...] = (256, 256)  # MLP widths of Q_i, pi_i and mu-hat_i
    mixer_hidden: int = 64  # hypernetwork width of the mixer
    shared_parameters: bool = True  # one network per role for all agents (with agent ids)
    grad_clip: float = 1.0  # gradient-norm clip, per parameter group (our choice)
    baseline_samples: int = 10  # continuous actions: policy samples for E_pi[Q_i] (our choice)


def batch_softmax_weights(logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """ICQ's estimate of ``exp(x) / Z`` with Z the mean of ``exp(x)`` over the batch (dim 0).

    ``weights = n softmax(x, dim=0)``: they average to 1 over the ``n`` counted rows.
    ``rows`` (bool, dim 0) restricts the softmax to some rows; the others get weight 0.
    """
    if rows is None:
        return logits.shape[0] * torch.softmax(logits, dim=0)
    mask = rows.view(-1, *([1] * (logits.dim() - 1)))
    weights = torch.softmax(logits.masked_fill(~mask, torch.finfo(logits.dtype).min), dim=0)
    count = rows.to(logits.dtype).sum()
    return weights * mask * count


def icq_td_target(
    reward: torch.Tensor, terminal: torch.Tensor, next_q_tot: torch.Tensor, gamma: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ICQ operator on a batch: ``(r + gamma rho Q-bar_tot(s', a'), rho)``, ``rho`` the batch
    softmax of ``Q-bar_tot(s', a') / alpha`` over the non-terminal rows (0 on terminal rows)."""
    continuing = terminal < 0.5
    rho = batch_softmax_weights(next_q_tot / alpha, continuing)
    return reward + gamma * rho * next_q_tot, rho


@register
class ICQ(Algorithm):
    name = "icq"
    display_name = "ICQ"
    column_order = 3
    title = "ICQ (implicit constraint Q-learning, multi-agent, Yang et al. 2021)"
    Config = ICQConfig
    loss_groups = {"behaviour_loss": ("behaviour",), "q_loss": ("q",), "policy_loss": ("policy",)}

    def __init__(self, spec: EnvSpec, config: ICQConfig, device: torch.device):
        super().__init__(spec, config, device)
        n, hidden, shared = spec.n_agents, config.hidden, config.shared_parameters
        q_inputs = spec.obs_dim if spec.discrete else spec.obs_dim + spec.action_dim
        q_outputs = spec.n_actions if spec.discrete else 1
        self.q_net = AgentMLP(n, q_inputs, q_outputs, hidden, shared=shared).to(device)
        self.mixer = LinearMixer(n, spec.state_dim, config.mixer_hidden).to(device)
        self.policy = policy_for_spec(spec, hidden, shared=shared).to(device)
        self.behaviour = policy_for_spec(spec, hidden, shared=shared).to(device)
        self.q_target = frozen_copy(self.q_net)
        self.mixer_target = frozen_copy(self.mixer)
        self._eye = torch.eye(spec.n_agents, device=device)

    def param_groups(self) -> list[ParamGroup]:
        cfg = self.config
        return [
            ParamGroup("q", [self.q_net, self.mixer], cfg.q_learning_rate, cfg.grad_clip),
            ParamGroup("policy", [self.policy], cfg.policy_learning_rate, cfg.grad_clip),
            ParamGroup("behaviour", [self.behaviour], cfg.behaviour_learning_rate, cfg.grad_clip),
        ]

    def targets(self) -> list[TargetNet]:
        tau = self.config.tau
        return [TargetNet(self.q_net, self.q_target, tau), TargetNet(self.mixer, self.mixer_target, tau)]

    def _q_taken(self, net: AgentMLP, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(o_i, a_i) ``[..., N]``; ``obs`` and ``actions`` share their leading dims."""
        if self.spec.discrete:
            return net(obs).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return net(torch.cat([obs, actions], dim=-1)).squeeze(-1)

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg, discrete = self.config, self.spec.discrete
        obs_input = with_agent_ids(self._eye, batch.obs)  # mu-hat_i, pi_i (and Q_i on discrete tasks)

        # Behaviour model mu-hat_i: maximum likelihood on the dataset's local actions.
        behaviour_out = flat_mlp(self.behaviour.net, obs_input)
        behaviour_loss = -self.behaviour.log_prob_of_output(behaviour_out, batch.actions, batch.avail).mean()

        with torch.no_grad():
            # ICQ operator: r + gamma rho(s', a') Q-bar_tot(s', a'), a' ~ mu, rho from the batch softmax.
            # An agent with no available action at o' (terminal padding) may take any.
            next_avail = None if batch.next_avail is None else batch.next_avail.bool()
            if next_avail is not None:
                next_avail = next_avail | ~next_avail.any(dim=-1, keepdim=True)
            next_actions, _ = self.behaviour.sample(batch.next_obs, next_avail)
            next_q_tot = self.mixer_target(self._q_taken(self.q_target, batch.next_obs, next_actions), batch.next_state)
            td_target, rho = icq_td_target(batch.reward, batch.terminal, next_q_tot, cfg.gamma, cfg.critic_alpha)

        # Critic: Q_tot = sum_i w_i(s) Q_i + b(s) regressed on the ICQ target.
        q_out = flat_mlp(self.q_net, obs_input if discrete else with_agent_ids(self._eye, batch.obs, batch.actions))
        q_taken = q_out.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1) if discrete else q_out.squeeze(-1)
        q_tot = self.mixer(q_taken, batch.state)
        q_loss = (q_tot - td_target).square().mean()

        # Actor: weights B softmax_batch(w_i A_i / alpha), per agent over the batch, with
        # A_i = Q_i(o_i, a_i) - E_{pi_i}[Q_i(o_i, .)], exact (discrete) or a sample mean (continuous).
        policy_out = flat_mlp(self.policy.net, obs_input)
        with torch.no_grad():
            if discrete:
                baseline = (masked_logits(policy_out, batch.avail).softmax(-1) * q_out).sum(-1)
            else:
                repeated = batch.obs.expand(cfg.baseline_samples, *batch.obs.shape)
                baseline = self._q_taken(self.q_net, repeated, self.policy.sample(repeated)[0]).mean(0)
            advantage = q_taken - baseline
            policy_weights = batch_softmax_weights(self.mixer.weights(batch.state) * advantage / cfg.actor_alpha)
        log_prob = self.policy.log_prob_of_output(policy_out, batch.actions, batch.avail)
        policy_loss = -(policy_weights * log_prob).mean()
        return {
            "behaviour_loss": behaviour_loss,
            "q_loss": q_loss,
            "policy_loss": policy_loss,
            "q_tot": q_tot,
            "critic_weight_max": rho.max(),
            "policy_weight_max": policy_weights.max(),
        }

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

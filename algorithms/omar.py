"""OMAR: offline multi-agent RL with actor rectification, continuous and discrete.

Pan, Huang, Ma, Xu, "Plan Better Amid Conservatism: Offline Multi-Agent Reinforcement
Learning with Actor Rectification", ICML 2022. Reference code: ling-pan/OMAR (continuous:
MPE and MaMuJoCo HalfCheetah); its discrete port in thu-rllab/CFCQL (REFERENCE.md).

Independent learners (each agent's critic and actor see only its own observation and
action), built on TD3 with a CQL critic; the actor mixes the policy gradient with a
regression toward the best action a zeroth-order search finds on the conservative critic:

- critics (independent TD3 twins with CQL(H)), for each agent i and k = 1, 2:
  ``min (Q_i^k(o_i, a_i) - y_i)^2 + alpha (log sum_a exp Q_i^k(o_i, a) - Q_i^k(o_i, a_i))``,
  ``y_i = r + gamma (1 - d) min_k Q-bar_i^k(o'_i, pi-bar_i(o'_i))``;
  the log-sum-exp over continuous actions is CQL's importance-sampled estimate over
  ``cql_samples`` uniform actions, and as many noisy policy actions at o_i and at o'_i
  (``pi(.) + N(0, cql_noise_std^2)``), each minus its own log-density;
- actor rectification: ``min (1 - c) (-Q_i^1(o_i, pi_i(o_i))) + c ||pi_i(o_i) - a-hat_i||^2``,
  ``a-hat_i`` the better (under Q_i^1) of ``pi_i(o_i)`` and the best action of a
  cross-entropy-method search: sample ``cem_samples`` actions from N(mu, sigma) (clipped to
  the action box), keep the ``cem_elites`` best (the previous elites compete again), refit
  mu and sigma to them, ``cem_iterations`` times, starting from N(cem_initial_mean,
  cem_initial_std^2). The search runs for the whole batch and all agents at once.

Discrete actions (the issue's discrete OMAR): Q_i is a head over the actions, the CQL term
is the exact log-sum-exp over the *available* actions, pi_i is a masked categorical, the
policy-gradient term is ``-E_{pi_i}[Q_i^1(o_i, .)]`` (exact), the bootstrap is
``E_{pi-bar_i}[min_k Q-bar_i^k(o'_i, .)]`` and the zeroth-order search is replaced by its
exact answer: ``a-hat_i = argmax`` of Q_i^1 over the available actions, regressed by
cross-entropy ``-log pi_i(a-hat_i | o_i)``.

Settings: CEM with 2 iterations, 20 samples, 5 elites, initial N(0, 2^2), the reference's
MaMuJoCo configuration (its MPE runs refit mu as a softmax-weighted mean instead; our search
tool gave us the ICML text's abstract and experiments but not its appendix, so these
values are the reference code's, not checked against the paper's table); per-dataset c and CQL alpha for
HalfCheetah (random 1.0 / 1.0, medium-replay 0.9 / 5.0, medium 0.7 / 1.0, expert 0.5 / 5.0,
the reference's table, in ``dataset_overrides``); elsewhere CQL alpha 1 (OMIGA Tables 5-6,
"tradeoff factor alpha (OMAR)") and c = 0.9 (our choice: the median of the reference's 16
per-dataset values). Adam 5e-4 for critics and actors, batch 128, gamma 0.99, Polyak tau
0.005, 256-256 MLPs (OMIGA Tables 5-6, the shared settings of all its baselines). From the
reference code, where the papers are silent: 10 samples per CQL proposal, policy-noise std
0.2, gradient-norm clipping at 0.5, the actor updated every step with the critic just
updated, no target-policy smoothing, a deterministic tanh actor; one network per agent
(``shared_parameters = False``, independent learners) evaluated in one batched pass.

Departures from the reference code (its bugs are not reproduced):

- gamma = 0.99: the reference sets 0.99 in its config but never passes it on, so its agents
  train with the constructor default 0.95;
- the CQL proposal densities are log-densities: the reference subtracts the Gaussian
  *pdf* of the policy noise as if it were a log-pdf;
- the importance-sampled log-sum-exp subtracts log(3 * cql_samples) so it estimates
  ``log integral exp Q`` (a constant shift; gradients unchanged);
- no ``1e-3 * mean(pi(o)^2)`` actor penalty (inherited by the reference from
  maddpg-pytorch, not in the paper); the rectification is the squared Euclidean norm of
  the paper (summed over action dimensions) rather than an element mean.

Matrix games and the bandit (standard profile, expected return of the stochastic joint
policy; means over 5 seeds, see tests/test_omar.py):

- penalty XOR, InSPO Table 1 reports OMAR 1.00 on {AB, BA}, -2.00 on {AA, AB, BA}, 0.00 on
  all four. Each agent's conservative critic estimates its own action's payoff averaged over
  the other agent's behaviour: on {AA, AB, BA}, Q_i(B) = 1 > Q_i(A) = 0.5 (before CQL), both
  agents rectify to B and meet at the unseen (B, B): measured -1.98; on all four,
  Q_i(A) = 0.5 > Q_i(B) = -0.5, so (A, A): measured 0.00. Both as published. On {AB, BA} the
  two actions of each agent have the same value (1): no independent critic can tell them
  apart, there is nothing to rectify toward, and the policies stay near 50/50: measured
  0.01 +- 0.03, not the published 1.00. We found nothing in the method that breaks this
  tie; InSPO ran CFCQL's discrete port (recurrent agents, rounded Gaussian samples refitted
  by a softmax), whose tie-breaking we do not reproduce;
- M-NE: the critics rank each agent's actions by the behaviour-averaged payoff, A under the
  biased data (0.8 * 5 > 0.1 * 20) and C under the uniform data: 5.0 and 20.0;
- OMSD's bandit: each critic peaks at both -1 and +1 (CQL pushes the unseen middle down),
  every row's search returns one of the two at random, and the squared-error regression
  toward them averages to about 0, the minimum of the agent's own critic: the joint action
  earns about 0 (measured 0.005 +- 0.008; on seed 0 the actions are 0.09 and -0.04).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.nets import AgentMLP, CategoricalPolicy, masked_logits
from marlbench.nets.targets import frozen_copy, parameters_frozen
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, Phase, Stage, TargetNet

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class OMARConfig(AlgorithmConfig):
    batch_size: int = 128  # transitions per update (OMIGA Table 5)
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target critics and actor
    critic_learning_rate: float = 5e-4  # Adam, both critics
    policy_learning_rate: float = 5e-4  # Adam, the actor
    hidden: tuple[int, ...] = (256, 256)  # MLP widths of critics and actor
    shared_parameters: bool = False  # False: one network per agent (independent learners)
    grad_clip: float = 0.5  # gradient-norm clip of the critics together and of the actor (reference code)
    cql_alpha: float = 1.0  # weight of the CQL gap
    cql_samples: int = 10  # per proposal: uniform, policy at o, policy at o' (reference code)
    cql_noise_std: float = 0.2  # std of the policy proposals' noise (reference code)
    rectification_coef: float = 0.9  # c; 0 turns the actor into TD3's (the search is skipped)
    cem_iterations: int = 2  # CEM refits per search
    cem_samples: int = 20  # actions sampled per CEM iteration
    cem_elites: int = 5  # best actions the refit uses
    cem_initial_mean: float = 0.0  # mean of the first CEM Gaussian
    cem_initial_std: float = 2.0  # std of the first CEM Gaussian
    exploration_std: float = 0.1  # act(deterministic=False) only (reference code)


def cross_entropy_method(
    score, shape: tuple[int, ...], cfg: OMARConfig, low: float, high: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``score(actions [S, *shape]) -> [S, *shape[:-1]]`` independently per leading index.

    Returns the best action found ``[*shape]`` and its score ``[*shape[:-1]]``. Each iteration
    samples ``cem_samples`` actions from N(mean, std^2) clipped to [low, high], ranks them
    together with the previous elites, and refits mean and std to the ``cem_elites`` best.
    """
    mean = torch.full(shape, cfg.cem_initial_mean, device=device)
    std = torch.full(shape, cfg.cem_initial_std, device=device)
    elites = torch.empty(0, *shape, device=device)
    elite_scores = torch.empty(0, *shape[:-1], device=device)
    for _ in range(cfg.cem_iterations):
        samples = (mean + std * torch.randn(cfg.cem_samples, *shape, device=device)).clamp(low, high)
        candidates = torch.cat([samples, elites])
        scores = torch.cat([score(samples), elite_scores])
        elite_scores, elite_index = scores.topk(cfg.cem_elites, dim=0)
        elites = candidates.gather(0, elite_index.unsqueeze(-1).expand(-1, *shape))
        mean, std = elites.mean(0), elites.std(0)
    best_score, best_index = scores.max(dim=0)
    best = candidates.gather(0, best_index.unsqueeze(0).unsqueeze(-1).expand(1, *shape)).squeeze(0)
    return best, best_score


def gaussian_log_density(noise: torch.Tensor, std: float) -> torch.Tensor:
    """``log N(noise; 0, std^2 I)`` summed over the last dimension."""
    return (-0.5 * (noise / std).square() - math.log(std) - HALF_LOG_2PI).sum(-1)


@register
class OMAR(Algorithm):
    name = "omar"
    display_name = "OMAR"
    column_order = 4
    title = "OMAR (offline MARL with actor rectification, Pan et al. 2022)"
    Config = OMARConfig
    dataset_overrides = {
        "mamujoco/halfcheetah/random": {"rectification_coef": 1.0, "cql_alpha": 1.0},
        "mamujoco/halfcheetah/medium-replay": {"rectification_coef": 0.9, "cql_alpha": 5.0},
        "mamujoco/halfcheetah/medium": {"rectification_coef": 0.7, "cql_alpha": 1.0},
        "mamujoco/halfcheetah/expert": {"rectification_coef": 0.5, "cql_alpha": 5.0},
    }

    def __init__(self, spec: EnvSpec, config: OMARConfig, device: torch.device):
        super().__init__(spec, config, device)
        n, hidden, shared = spec.n_agents, config.hidden, config.shared_parameters
        critic_in, critic_out = (spec.obs_dim, spec.n_actions) if spec.discrete else (spec.obs_dim + spec.action_dim, 1)
        self.q1 = AgentMLP(n, critic_in, critic_out, hidden, shared=shared).to(device)
        self.q2 = AgentMLP(n, critic_in, critic_out, hidden, shared=shared).to(device)
        # A masked categorical policy (discrete), or TD3's deterministic tanh actor (continuous).
        if spec.discrete:
            self.policy = CategoricalPolicy(n, spec.obs_dim, spec.n_actions, hidden, shared=shared).to(device)
        else:
            self.policy = AgentMLP(n, spec.obs_dim, spec.action_dim, hidden, shared=shared).to(device)
        self.q1_target = frozen_copy(self.q1)
        self.q2_target = frozen_copy(self.q2)
        self.policy_target = frozen_copy(self.policy)
        self._low, self._high = spec.action_low, spec.action_high

    def param_groups(self) -> list[ParamGroup]:
        cfg = self.config
        return [
            ParamGroup("critic", [self.q1, self.q2], cfg.critic_learning_rate, cfg.grad_clip),
            ParamGroup("policy", [self.policy], cfg.policy_learning_rate, cfg.grad_clip),
        ]

    def targets(self) -> list[TargetNet]:
        pairs = [(self.q1, self.q1_target), (self.q2, self.q2_target), (self.policy, self.policy_target)]
        return [TargetNet(online, target, self.config.tau) for online, target in pairs]

    def phases(self) -> list[Phase]:
        # The critics take their step first; the actor is then trained on the critic just updated.
        stages = (
            Stage("critic", self.critic_losses, {"critic_loss": ("critic",)}),
            Stage("actor", self.actor_losses, {"policy_loss": ("policy",)}),
        )
        return [Phase("update", 1, stages)]

    # --- networks ------------------------------------------------------------------------

    def _deterministic_action(self, net: AgentMLP, obs: torch.Tensor) -> torch.Tensor:
        """The tanh actor mapped onto the action box, ``[..., N, A]``."""
        scale = (self._high - self._low) / 2
        return (self._low + self._high) / 2 + scale * torch.tanh(net(obs))

    @staticmethod
    def _q(net: AgentMLP, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Continuous Q_i(o_i, a_i), ``[..., N]``; ``obs`` broadcasts over leading sample dims."""
        obs = obs.expand(*actions.shape[:-1], obs.shape[-1])
        return net(torch.cat([obs, actions], dim=-1)).squeeze(-1)

    # --- the CQL regulariser -----------------------------------------------------------

    def cql_proposals(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """CQL's continuous proposals ``[3K, B, N, A]`` and their log-densities ``[3K, B, N]``:
        K uniform actions, K noisy policy actions at o_i and K at o'_i (all scored at o_i)."""
        cfg, k, device = self.config, self.config.cql_samples, batch.obs.device
        shape = (k, *batch.actions.shape)
        uniform = torch.empty(shape, device=device).uniform_(self._low, self._high)
        with torch.no_grad():
            policy_actions = self._deterministic_action(self.policy, torch.stack([batch.obs, batch.next_obs]))
        noise = cfg.cql_noise_std * torch.randn(2, *shape, device=device)
        noisy = (policy_actions.unsqueeze(1) + noise).clamp(self._low, self._high).flatten(0, 1)
        uniform_log_density = -self.spec.action_dim * math.log(self._high - self._low)
        log_density = torch.cat(
            [
                torch.full(shape[:-1], uniform_log_density, device=device),
                gaussian_log_density(noise, cfg.cql_noise_std).flatten(0, 1),
            ]
        )
        return torch.cat([uniform, noisy]), log_density

    @staticmethod
    def sampled_logsumexp(q_samples: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
        """Importance-sampled ``log integral exp Q_i(o_i, a) da`` from proposals: ``[S, ...] -> [...]``."""
        return (q_samples - log_density).logsumexp(dim=0) - math.log(q_samples.shape[0])

    def _critic_terms(self, net: AgentMLP, batch: Batch, avail, proposals) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q_i(o_i, a_i), log sum_a exp Q_i(o_i, a))``, each ``[B, N]``; discrete: exact over available actions."""
        if self.spec.discrete:
            q_all = net(batch.obs)
            q_taken = q_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
            return q_taken, masked_logits(q_all, avail).logsumexp(dim=-1)
        samples, log_density = proposals
        q = self._q(net, batch.obs, torch.cat([batch.actions.unsqueeze(0), samples]))
        return q[0], self.sampled_logsumexp(q[1:], log_density)

    # --- the actor's rectification target ------------------------------------------------

    def exact_best_actions(self, q_values: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        """Discrete ``a-hat_i``: the argmax of Q_i^1 over the available actions, ``[B, N]``."""
        return masked_logits(q_values, avail).argmax(dim=-1)

    def searched_best_actions(self, obs: torch.Tensor, policy_actions: torch.Tensor) -> torch.Tensor:
        """Continuous ``a-hat_i``: the better under Q_i^1 of the policy's action and the CEM search's best."""
        searched, searched_q = cross_entropy_method(
            lambda actions: self._q(self.q1, obs, actions),
            tuple(policy_actions.shape),
            self.config,
            self._low,
            self._high,
            obs.device,
        )
        policy_q = self._q(self.q1, obs, policy_actions)
        return torch.where((searched_q > policy_q).unsqueeze(-1), searched, policy_actions)

    # --- the two stages of a step --------------------------------------------------------

    def critic_losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """TD on the team reward plus the CQL gap, for both twins (same CQL proposals)."""
        cfg = self.config
        with torch.no_grad():
            if self.spec.discrete:
                # Terminal padding with no available action: any action will do.
                next_avail = batch.next_avail
                if next_avail is not None:
                    next_avail = next_avail.bool() | ~next_avail.bool().any(dim=-1, keepdim=True)
                next_q = torch.minimum(self.q1_target(batch.next_obs), self.q2_target(batch.next_obs))
                next_value = (self.policy_target.probs(batch.next_obs, next_avail) * next_q).sum(-1)
            else:
                next_actions = self._deterministic_action(self.policy_target, batch.next_obs)
                next_value = torch.minimum(
                    self._q(self.q1_target, batch.next_obs, next_actions),
                    self._q(self.q2_target, batch.next_obs, next_actions),
                )
            td_target = batch.reward.unsqueeze(-1) + cfg.gamma * (1.0 - batch.terminal).unsqueeze(-1) * next_value

        proposals = None if self.spec.discrete else self.cql_proposals(batch)
        td_loss = cql_gap = torch.zeros((), device=batch.obs.device)
        for net in (self.q1, self.q2):
            q_taken, logsumexp = self._critic_terms(net, batch, batch.avail, proposals)
            td_loss = td_loss + (q_taken - td_target).square().mean()
            cql_gap = cql_gap + (logsumexp - q_taken).mean()
        return {"critic_loss": td_loss + cfg.cql_alpha * cql_gap, "td_loss": td_loss, "cql_gap": cql_gap}

    def actor_losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """(1 - c) policy gradient on Q_i^1 + c regression toward a-hat_i, on the critic just updated."""
        cfg = self.config
        rectification = torch.zeros((), device=batch.obs.device)
        if self.spec.discrete:
            log_probs = self.policy.logits(batch.obs, batch.avail).log_softmax(dim=-1)
            with torch.no_grad():
                q_values = self.q1(batch.obs)
            gradient_term = -(log_probs.exp() * q_values).sum(-1).mean()
            if cfg.rectification_coef > 0:
                best = self.exact_best_actions(q_values, batch.avail)
                rectification = -log_probs.gather(-1, best.unsqueeze(-1)).mean()
        else:
            actions = self._deterministic_action(self.policy, batch.obs)
            with parameters_frozen(self.q1):
                gradient_term = -self._q(self.q1, batch.obs, actions).mean()
            if cfg.rectification_coef > 0:
                with torch.no_grad():
                    best = self.searched_best_actions(batch.obs, actions.detach())
                rectification = (actions - best).square().sum(-1).mean()
        policy_loss = (1.0 - cfg.rectification_coef) * gradient_term + cfg.rectification_coef * rectification
        return {"policy_loss": policy_loss, "rectification": rectification}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        if self.spec.discrete:
            return self.policy.act(obs, avail, deterministic)
        actions = self._deterministic_action(self.policy, obs)
        if deterministic:
            return actions
        return (actions + self.config.exploration_std * torch.randn_like(actions)).clamp(self._low, self._high)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        if not self.spec.discrete:
            return super().action_probs(obs, avail)
        return self.policy.probs(obs, avail)

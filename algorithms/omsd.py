"""OMSD: offline MARL with sequential score decomposition (continuous actions only).

Paper: "Offline Multi-Agent Reinforcement Learning with Sequential Score Decomposition"
(anonymous, under review; /work/shared/papers/omsd.md), §3.2 and §4 (Algorithm 1). It has
no public code; this module is the benchmark's reference implementation. Where the paper
is silent it follows SRPO (Chen et al., ICLR 2024, "Score Regularized Policy Optimization
through Diffusion Behavior", code thu-ml/SRPO, read for its settings only), which OMSD
extends to several agents (§4).

Behaviour-regularised policy optimisation (Eq. 3-5) on the joint policy,

    max_pi E_s[ E_{a~pi}[Q_tot(s, a)] - (1/beta) KL(pi(.|s) || mu(.|s)) ],

with the joint behaviour policy decomposed sequentially (§3.2),
``mu(a|s) = prod_i mu_i(a_i | s, a_{<i})`` (agents in index order), gives each agent the
gradient (Eq. 13)

    grad_theta_i = E_s[ grad_{a_i} Q_tot(s, a) + (1/beta) grad_{a_i} log mu_i(a_i | s, a_{<i}) ] grad_theta_i pi_i,

evaluated at ``a = pi(o)``, the current deterministic actions of all agents. Training has
two stages (Algorithm 1):

1. Pretraining (steps ``1 .. pretrain_steps``):
   - the joint critic by IQL: ``V(s)`` by expectile regression on ``min_k Q-bar_k(s, a)``
     (``L_V = E|tau - 1(u < 0)| u^2``, ``u = Q-bar - V``), then twin ``Q_k(s, a)`` by
     regression on ``r + gamma (1 - d) V(s')`` (:func:`expectile_loss`, :func:`iql_losses`);
   - one diffusion behaviour model per agent, ``eps_i(a_i^t, t | s, a_{<i})``, by the
     denoising loss (Eq. 2) on the VP-SDE ``a^t = alpha_t a + sigma_t z``
     (:func:`vp_marginal`, :func:`denoising_loss`); the prefix ``a_{<i}`` is the dataset's.
2. Policy extraction (steps after ``pretrain_steps``): a deterministic tanh actor
   ``pi_i(o_i)`` per agent on its own observation, trained with Eq. 13 through the score
   distillation surrogate of Proposition 4 (SRPO's Proposition 1):

       L(theta) = E_{s,t,z}[ -Q_tot(s, pi(o))
                             + (1/beta) sum_i sigma_t^2 <sg[eps_i(a_i^t, t | s, sg[pi_{<i}]) - z_i], pi_i> ],
       a_i^t = alpha_t pi_i(o_i) + sigma_t z_i,

   with ``t ~ U(0.02, 0.98)`` and ``sg`` = stop-gradient (:func:`score_surrogate`). Its
   gradient is Eq. 13 with ``grad log mu_i`` replaced by the sigma_t^2-weighted diffused
   scores ``-(eps_i - z_i) / sigma_t``. The diffusion models are never sampled here: one
   ``eps`` evaluation per sample and agent. The critic is frozen (as SRPO, whose policy
   stage loads a pretrained critic), and its Q-term is the mean of the twin target heads
   (SRPO's choice).

``decomposition`` selects the score decomposition of §3.1-3.2 (Table 1 and the ablation of
§5.3 are runs of this one module):

- ``sequential``: OMSD (BRPO-SSD), ``mu_i(a_i | s, a_{<i})`` and the joint critic ``Q_tot``;
- ``factorized``: BRPO-FAC (Appendix B.2), the joint critic ``Q_tot`` with independently
  modelled ``mu_i(a_i | s)``;
- ``independent``: BRPO-Ind (Proposition 1, Eq. 6-7), per-agent critics ``Q^i(s, a_i)``
  trained by the same IQL regressions on the team reward, and ``mu_i(a_i | s)``.

Settings from SRPO's code where OMSD is silent: VP-SDE with beta from 0.1 to 20; the
denoiser is an MLP-ResNet on ``[a^t, s, a_{<i}, time features]`` (hidden 256, 3 blocks of
LayerNorm -> Linear(256, 1024) -> Mish -> Linear(1024, 256) with a skip connection) with
Gaussian Fourier time features (64, scale 30, fixed) passed through a 64-128-128 Mish MLP;
denoising times ``t ~ U(1e-3, 1)``; AdamW 3e-4 (weight decay 0.01, torch's default) for the
behaviour models; IQL with expectile 0.7, gamma 0.99, twin Q and V MLPs 256-256, Adam
3e-4, target Polyak tau 0.005; actor MLP 256-256 with tanh output, Adam 3e-4; surrogate
weight sigma_t^2 and ``t ~ U(0.02, 0.98)``; no normalisation of the Q gradient (SRPO
normalises only on AntMaze).

beta: OMSD reports the best beta per HalfCheetah dataset from {0.01, 0.05, 0.1, 0.15}
"respectively" (§5.3) for the datasets its ablation lists in the order expert, medium,
medium-replay, random; we read that as expert 0.01, medium 0.05, medium-replay 0.1 (the
``dataset_overrides`` table; our suite has no random quality, medium-expert takes SRPO's
HalfCheetah medium-expert 0.01), default 0.05. OMSD's beta and SRPO's are the same
quantity: SRPO minimises ``sigma^2 <eps, a> - beta <grad Q, a>``, beta times our loss.

Departures from the paper and SRPO, and why:

- The two stages share one run: the critic and the behaviour models train together for
  ``pretrain_steps`` (they are independent regressions, so training them side by side on
  the same batches is Algorithm 1's lines 2-9 interleaved), then the actors train with
  both frozen. SRPO runs 1.5M critic steps (batch 256), 2M behaviour steps (batch 2048)
  and 1M policy steps (batch 256): 2/3 of the updates before the actors. Our default
  ``pretrain_fraction`` keeps that split for any run length (``resolve_schedule``);
  ``pretrain_steps`` set explicitly replaces it.
- One batch size (``batch_size``, 256) for all three models; SRPO's behaviour batch is
  2048. Each row draws one ``(t, z)`` pair.
- Constant actor learning rate; SRPO anneals it to 0 with a cosine schedule over its
  policy stage, whose length the trainer does not tell an algorithm.
- No dropout in the denoiser (SRPO uses 0.1 and switches it off in the policy stage);
  the LayerNorms have separate affine parameters per agent like every other layer.
- The surrogate subtracts the injected noise, ``eps_i - z_i`` (Proposition 4's form);
  SRPO's default omits ``z``, which has zero mean: the same expected gradient, more
  variance.
- In Eq. 13 the prefix ``a_{<i}`` is the current actors' actions, held fixed (detached)
  for agent i's score; gradients of ``log mu_j(a_j | s, a_{<j})`` with respect to the
  prefix actions of later agents j > i are not propagated, as Eq. 13 writes the per-agent
  regulariser ``-sigma_t grad_{a_i} log mu_i(a_i | s, a_{<i})`` only.
- All agents' actors take their step at once on the same batch (Eq. 13 for every i, with
  ``a_{-i}`` the other actors' current actions).
- ``act`` returns the deterministic actor's action whether or not ``deterministic`` is set.

- One-step games (``problem_overrides["one-step"]``: the matrix suite's 2-D bandit): networks
  64 wide (critic, actor, denoiser with 2 blocks) so that ``make demo`` stays within its budget
  on two CPU cores (the full-size denoiser took ~0.2 s per update there on our loaded machine);
  beta 1 (the paper gives none for the bandit; its rewards lie in [-1, 1], two orders of
  magnitude below MaMuJoCo's values).

Bandit (OMSD Table 1; matrix suite, standard budget, 5 seeds, deterministic return): with
beta 1, ``sequential`` 0.99 on every seed (published 1 +- 0); ``independent`` ends in a
corner on every seed, miscoordinated on 4 of 5 (-0.59 +- 0.79; published 0 +- 1): each
``Q^i(s, a_i)`` of the correlated data grows with ``|a_i|`` and each marginal score pushes
towards the nearer mode, with nothing tying the agents together. ``factorized`` does not
reproduce the published 0 +- 1: 0.99 on every seed, because the joint critic's gradient
``d(a1 a2)/da1 = a2`` pulls the actors to the same corner whenever the Q-term carries
weight. With strong regularisation (beta 0.1, 3 seeds) ``factorized`` stays near the
centre (0.25, 0.01, 0.04) while ``sequential`` coordinates short of the corner (0.57, 0.47,
0.47): the sigma_t^2-weighted surrogate is dominated by large t, where the diffused
marginals are unimodal about 0, so the decomposition's coordination shows but the
published magnitudes do not. beta 0.3: 0.97, 0.91, 0.97 (sequential), 0.97, 0.97, 0.95
(factorized).

:meth:`OMSD.sample_behaviour` draws joint actions from the learned behaviour models by the
reverse process (first-order solver of the VP-SDE's probability-flow ODE, i.e. DDIM); it
is for diagnostics and tests only and is never called in training.

Computational budget: the paper needed 10 h of pretraining and 12 h of policy extraction
on an RTX 3090 for 2-agent HalfCheetah (Appendix C).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.algorithm import Algorithm, AlgorithmConfig, register, require_resolved, steps_of_run
from marlbench.data.sampler import Batch
from marlbench.errors import ConfigError
from marlbench.nets import AgentLinear, AgentMLP
from marlbench.nets.targets import frozen_copy
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, Phase, Stage, TargetNet

Decomposition = Literal["sequential", "independent", "factorized"]


@dataclass
class OMSDConfig(AlgorithmConfig):
    batch_size: int = 256  # SRPO: critic and actor batches 256 (behaviour 2048; see the docstring)
    decomposition: Decomposition = "sequential"  # the score decomposition of §3.1-3.2 (see the docstring)
    beta: float = 0.05  # OMSD §5.3: best per HalfCheetah dataset in {0.01, 0.05, 0.1, 0.15}
    pretrain_steps: int | None = None  # stage 1 length; None: pretrain_fraction of the run
    pretrain_fraction: float = 2 / 3  # SRPO's split: 2/3 of the updates before the actors (see the docstring)
    gamma: float = 0.99  # SRPO (IQL)
    expectile: float = 0.7  # SRPO (IQL, locomotion)
    tau: float = 0.005  # SRPO: Polyak rate of the target Q
    critic_lr: float = 3e-4  # SRPO
    critic_hidden: tuple[int, ...] = (256, 256)  # SRPO
    diffusion_lr: float = 3e-4  # SRPO (AdamW)
    diffusion_weight_decay: float = 0.01  # SRPO uses AdamW's default
    diffusion_hidden: int = 256  # SRPO's MLP-ResNet width
    diffusion_blocks: int = 3  # SRPO: actor_blocks
    time_embedding_dim: int = 64  # SRPO: Gaussian Fourier features, then a 64-128-128 MLP
    fourier_scale: float = 30.0  # SRPO
    vp_beta_min: float = 0.1  # SRPO's VP-SDE
    vp_beta_max: float = 20.0  # SRPO's VP-SDE
    denoise_t_min: float = 1e-3  # SRPO: t ~ U(1e-3, 1) in the denoising loss
    actor_lr: float = 3e-4  # SRPO (without its cosine schedule)
    actor_hidden: tuple[int, ...] = (256, 256)  # SRPO: Dirac policy, 2 layers on locomotion
    surrogate_t_min: float = 0.02  # SRPO
    surrogate_t_max: float = 0.98  # SRPO
    sample_steps: int = 50  # ours: reverse-process steps of sample_behaviour (diagnostics only)


# ----------------------------------------------------------------------------- equations
def vp_marginal(t: torch.Tensor, beta_min: float, beta_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """VP-SDE marginal ``q(a^t | a) = N(alpha_t a, sigma_t^2)``:
    ``log alpha_t = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2``, ``sigma_t^2 = 1 - alpha_t^2``."""
    log_alpha = -0.25 * t.square() * (beta_max - beta_min) - 0.5 * t * beta_min
    return log_alpha.exp(), (-torch.expm1(2.0 * log_alpha)).sqrt()


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's expectile regression ``E[|tau - 1(u < 0)| u^2]`` of ``u = Q-bar(s, a) - V(s)``."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def iql_losses(
    q: torch.Tensor,
    q_target: torch.Tensor,
    v: torch.Tensor,
    v_next: torch.Tensor,
    reward: torch.Tensor,
    terminal: torch.Tensor,
    gamma: float,
    expectile: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1 critic: ``(L_V, L_Q)``.

    ``q [2, B, K]`` the twin heads at the dataset actions, ``q_target [2, B, K]`` the target
    heads, ``v, v_next [B, K]`` (K = 1 joint critic, or N per-agent critics), ``reward`` and
    ``terminal [B]``. ``L_V`` = expectile loss of ``min_k Q-bar_k - V``; ``L_Q`` = mean over the
    twins of ``(Q_k - (r + gamma (1 - d) V(s')))^2`` with ``V(s')`` held fixed.
    """
    v_loss = expectile_loss(q_target.min(0).values.detach() - v, expectile)
    td_target = reward[:, None] + gamma * (1.0 - terminal)[:, None] * v_next.detach()
    q_loss = (q - td_target).square().mean()
    return v_loss, q_loss


def denoising_loss(predicted_noise: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``E||eps_i(a_i^t, t | s, a_{<i}) - z||^2`` per agent, summed over agents;
    inputs ``[B, N, A]``."""
    return (predicted_noise - noise).square().sum(-1).mean(0).sum()


def score_surrogate(
    actions: torch.Tensor, predicted_noise: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """Proposition 4's regulariser ``sum_i sigma_t^2 <sg[eps_i - z_i], a_i>``, batch mean.

    ``actions [B, N, A]`` carry the actors' gradient; ``predicted_noise`` and ``noise`` are
    ``[B, N, A]``, ``sigma [B, N]``. Its gradient with respect to ``a_i`` is
    ``sigma_t^2 (eps_i - z_i) = -sigma_t^3 grad log mu_{i,t}`` in expectation: the diffused
    behaviour score with SRPO's weight ``omega(t) = sigma_t^2``.
    """
    guidance = (sigma.square()[..., None] * (predicted_noise - noise)).detach()
    return (guidance * actions).sum((-2, -1)).mean()


# ----------------------------------------------------------------------------- networks
class _AgentLayerNorm(nn.Module):
    """LayerNorm over the last dim with separate affine parameters per agent (dim -2)."""

    def __init__(self, n_agents: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_agents, width))
        self.bias = nn.Parameter(torch.zeros(n_agents, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class _ResidualBlock(nn.Module):
    """SRPO/IDQL's MLP-ResNet block ``x + W_2 mish(W_1 LN(x))`` with a 4x wider middle layer."""

    def __init__(self, n_agents: int, width: int):
        super().__init__()
        self.norm = _AgentLayerNorm(n_agents, width)
        self.expand = AgentLinear(n_agents, width, 4 * width)
        self.contract = AgentLinear(n_agents, 4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.contract(F.mish(self.expand(self.norm(x))))


class ScoreNetworks(nn.Module):
    """The agents' denoisers ``eps_i(a_i^t, t | s, a_{<i})``, separate parameters per agent,
    evaluated together: ``[..., N, A]`` noisy actions, ``t [..., N]``, ``state [..., S]``,
    ``prefix [..., N, N*A]`` (zeros where agent i does not condition) -> ``[..., N, A]``.

    ``prefix_mask[i, j] = 1`` when agent j's action is an input of agent i's model: ``j < i``
    for the sequential decomposition; no prefix input at all for the independent models.
    """

    def __init__(self, spec: EnvSpec, config: OMSDConfig):
        super().__init__()
        n, action_dim = spec.n_agents, spec.action_dim
        assert action_dim is not None
        self.n_agents = n
        sequential = config.decomposition == "sequential"
        self.register_buffer("prefix_mask", torch.ones(n, n).tril(-1) if sequential else torch.zeros(n, 0))
        embed = config.time_embedding_dim
        # Gaussian Fourier features of t: fixed random frequencies (a buffer, not trained).
        self.register_buffer("frequencies", torch.randn(embed // 2) * config.fourier_scale)
        self.time_in = AgentLinear(n, 2 * (embed // 2), 2 * embed)
        self.time_out = AgentLinear(n, 2 * embed, 2 * embed)
        prefix_dim = n * action_dim if sequential else 0
        width = config.diffusion_hidden
        self.input = AgentLinear(n, action_dim + spec.state_dim + prefix_dim + 2 * embed, width)
        self.blocks = nn.Sequential(*(_ResidualBlock(n, width) for _ in range(config.diffusion_blocks)))
        self.output = AgentLinear(n, width, action_dim)

    def prefix(self, actions: torch.Tensor) -> torch.Tensor:
        """Each agent's conditioning actions ``[..., N, N*A]`` from joint actions ``[..., N, A]``."""
        if self.prefix_mask.shape[-1] == 0:
            return actions.new_zeros((*actions.shape[:-1], 0))
        return (self.prefix_mask[..., None] * actions[..., None, :, :]).flatten(-2)

    def forward(
        self, noisy_actions: torch.Tensor, t: torch.Tensor, state: torch.Tensor, prefix: torch.Tensor
    ) -> torch.Tensor:
        angles = 2.0 * math.pi * t[..., None] * self.frequencies
        time_features = self.time_out(F.mish(self.time_in(torch.cat([angles.sin(), angles.cos()], -1))))
        states = state[..., None, :].expand(*noisy_actions.shape[:-1], state.shape[-1])
        x = self.input(torch.cat([noisy_actions, states, prefix, time_features], -1))
        return self.output(F.mish(self.blocks(x)))


class _TwinCritic(nn.Module):
    """IQL's twin Q-networks for K critics (1 joint ``Q_tot(s, a)`` or N individual
    ``Q^i(s, a_i)``): inputs ``[..., K, in]`` -> ``[2, ..., K]``."""

    def __init__(self, n_critics: int, in_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.n_critics = n_critics
        self.net = AgentMLP(2 * n_critics, in_dim, 1, hidden, agent_id=False, shared=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.net(torch.cat([x, x], -2)).squeeze(-1)
        return q.unflatten(-1, (2, self.n_critics)).movedim(-2, 0)


class _DeterministicActors(nn.Module):
    """``pi_i(o_i) = loc + scale tanh(f_i(o_i))`` per agent (separate parameters): ``[..., N, O] -> [..., N, A]``."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...]):
        super().__init__()
        assert spec.action_dim is not None
        self.net = AgentMLP(spec.n_agents, spec.obs_dim, spec.action_dim, hidden, agent_id=False, shared=False)
        self.loc = (spec.action_high + spec.action_low) / 2
        self.scale = (spec.action_high - spec.action_low) / 2

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.loc + self.scale * torch.tanh(self.net(obs))


# ----------------------------------------------------------------------------- algorithm
@register
class OMSD(Algorithm):
    name = "omsd"
    display_name = "OMSD"
    column_order = 9
    title = "OMSD (sequential score decomposition, continuous actions only)"
    action_types = ("continuous",)
    Config = OMSDConfig
    # beta per HalfCheetah dataset (OMSD §5.3, read in the order of its ablation; medium-expert
    # from SRPO). One-step games (the matrix suite's 2-D bandit): the bandit's rewards lie in
    # [-1, 1], two orders of magnitude below MaMuJoCo's values, so beta (the weight of Q against
    # the score) is larger, and the networks are smaller: see the docstring.
    dataset_overrides = {
        "mamujoco/halfcheetah/expert": {"beta": 0.01},
        "mamujoco/halfcheetah/medium": {"beta": 0.05},
        "mamujoco/halfcheetah/medium-replay": {"beta": 0.1},
        "mamujoco/halfcheetah/medium-expert": {"beta": 0.01},
    }
    problem_overrides = {
        "one-step": {
            "beta": 1.0,
            "diffusion_hidden": 64,
            "diffusion_blocks": 2,
            "critic_hidden": (64, 64),
            "actor_hidden": (64, 64),
        },
    }

    @classmethod
    def resolve_schedule(cls, config: OMSDConfig, total_steps: int) -> OMSDConfig:
        pretrain = steps_of_run(cls.name, "pretrain", config.pretrain_steps, config.pretrain_fraction, total_steps)
        return dataclasses.replace(config, pretrain_steps=pretrain)

    def __init__(self, spec: EnvSpec, config: OMSDConfig, device: torch.device):
        super().__init__(spec, config, device)
        require_resolved(self.name, config, ("pretrain_steps",))
        if spec.discrete:
            raise ConfigError("omsd: continuous actions only (its behaviour models are diffusion models)")
        if config.beta <= 0:
            raise ConfigError(f"omsd: beta must be positive, found {config.beta}")
        if not 0.0 < config.surrogate_t_min < config.surrogate_t_max <= 1.0:
            raise ConfigError("omsd: need 0 < surrogate_t_min < surrogate_t_max <= 1")
        n, action_dim = spec.n_agents, spec.action_dim
        assert action_dim is not None
        self.n_agents = n
        self.joint_critic = config.decomposition != "independent"
        n_critics, critic_in = (
            (1, spec.state_dim + n * action_dim) if self.joint_critic else (n, spec.state_dim + action_dim)
        )

        self.critic = _TwinCritic(n_critics, critic_in, config.critic_hidden).to(device)
        self.critic_target = frozen_copy(self.critic)
        self.value = AgentMLP(n_critics, spec.state_dim, 1, config.critic_hidden, agent_id=False, shared=False).to(
            device
        )
        self.score = ScoreNetworks(spec, config).to(device)
        self.actors = _DeterministicActors(spec, config.actor_hidden).to(device)
        # SRPO trains the behaviour models with AdamW: decoupled weight decay on their group of the core's Adam.
        score_group = [group.name for group in self.param_groups()].index("score")
        self.step_core.optimizer.param_groups[score_group].update(
            weight_decay=config.diffusion_weight_decay, decoupled_weight_decay=True
        )

    def param_groups(self) -> list[ParamGroup]:
        cfg = self.config
        return [
            ParamGroup("critic", [self.critic, self.value], cfg.critic_lr),
            ParamGroup("score", [self.score], cfg.diffusion_lr),
            ParamGroup("actor", [self.actors], cfg.actor_lr),
        ]

    def targets(self) -> list[TargetNet]:
        return [TargetNet(self.critic, self.critic_target, self.config.tau)]  # follows only while stage 1 trains

    def phases(self) -> list[Phase]:
        trains = {"v_loss": ("critic",), "q_loss": ("critic",), "behaviour_loss": ("score",)}
        stage_1 = Stage("pretrain", self._pretrain_losses, trains)  # the critic and the behaviour models side by side
        stage_2 = Stage("policy", self._policy_losses, {"actor_loss": ("actor",)})
        return [Phase("pretrain", 1, (stage_1,)), Phase("policy", self.config.pretrain_steps + 1, (stage_2,))]

    # ------------------------------------------------------------------ helpers
    def _critic_input(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[B, 1, S + N*A]`` for ``Q_tot(s, a)``, ``[B, N, S + A]`` for the ``Q^i(s, a_i)``."""
        if self.joint_critic:
            return torch.cat([state, actions.flatten(-2)], -1)[:, None]
        return torch.cat([state[:, None].expand(-1, self.n_agents, -1), actions], -1)

    def _value(self, state: torch.Tensor) -> torch.Tensor:
        return self.value(state[:, None].expand(-1, self.value.n_agents, -1)).squeeze(-1)

    def _diffuse(self, actions: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a^t = alpha_t a + sigma_t z, z, sigma_t)`` for ``actions [B, N, A]``, ``t [B, N]``."""
        alpha, sigma = vp_marginal(t, self.config.vp_beta_min, self.config.vp_beta_max)
        noise = torch.randn_like(actions)
        return alpha[..., None] * actions + sigma[..., None] * noise, noise, sigma

    # ------------------------------------------------------------------ losses
    def _pretrain_losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """Stage 1 (Algorithm 1, lines 2-9): IQL for the critic, Eq. 2 for the behaviour models."""
        cfg = self.config
        actions = batch.actions
        critic_input = self._critic_input(batch.state, actions)
        with torch.no_grad():
            q_target = self.critic_target(critic_input)
            v_next = self._value(batch.next_state)
        v_loss, q_loss = iql_losses(
            self.critic(critic_input),
            q_target,
            self._value(batch.state),
            v_next,
            batch.reward,
            batch.terminal,
            cfg.gamma,
            cfg.expectile,
        )

        t = cfg.denoise_t_min + (1.0 - cfg.denoise_t_min) * torch.rand(actions.shape[:-1], device=actions.device)
        noisy, noise, _ = self._diffuse(actions, t)
        behaviour_loss = denoising_loss(self.score(noisy, t, batch.state, self.score.prefix(actions)), noise)
        return {"v_loss": v_loss, "q_loss": q_loss, "behaviour_loss": behaviour_loss}

    def _policy_losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """Stage 2 (Algorithm 1, lines 10-13): Eq. 13 through the surrogate of Proposition 4."""
        cfg = self.config
        actions = self.actors(batch.obs)
        t_span = cfg.surrogate_t_max - cfg.surrogate_t_min
        t = cfg.surrogate_t_min + t_span * torch.rand(actions.shape[:-1], device=actions.device)
        with torch.no_grad():
            noisy, noise, sigma = self._diffuse(actions, t)
            predicted_noise = self.score(noisy, t, batch.state, self.score.prefix(actions))
        # Q-term: mean of the frozen twin target heads; gradients reach each actor through its own a_i.
        q = self.critic_target(self._critic_input(batch.state, actions)).mean(0).sum(-1).mean()
        regulariser = score_surrogate(actions, predicted_noise, noise, sigma)
        return {"actor_loss": -q + regulariser / cfg.beta, "q_policy": q, "score_term": regulariser}

    # ------------------------------------------------------------------ acting and diagnostics
    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        """The deterministic actors' actions ``[B, N, A]`` (the same with or without ``deterministic``)."""
        return self.actors(obs)

    @torch.no_grad()
    def sample_behaviour(self, state: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Joint actions ``[B, N, A]`` from the learned behaviour models by the reverse process.

        First-order solver of the probability-flow ODE (DDIM) from ``t = 1`` to
        ``denoise_t_min`` on a uniform grid, the clean-action estimate clipped to the box at
        every step. Agents are sampled in index order; under the sequential decomposition
        agent i's model conditions on the prefix already sampled.
        """
        cfg, spec = self.config, self.spec
        steps = steps or cfg.sample_steps
        shape = (state.shape[0], self.n_agents, spec.action_dim)
        joint = torch.zeros(shape, device=state.device)
        grid = torch.linspace(1.0, cfg.denoise_t_min, steps + 1, device=state.device)
        for agent in range(self.n_agents):
            prefix = self.score.prefix(joint)
            x = torch.randn(shape, device=state.device)
            for t_now, t_next in zip(grid[:-1], grid[1:], strict=True):
                alpha, sigma = vp_marginal(t_now, cfg.vp_beta_min, cfg.vp_beta_max)
                alpha_next, sigma_next = vp_marginal(t_next, cfg.vp_beta_min, cfg.vp_beta_max)
                noise = self.score(x, t_now.expand(shape[:-1]), state, prefix)
                clean = ((x - sigma * noise) / alpha).clamp(spec.action_low, spec.action_high)
                x = alpha_next * clean + sigma_next * (x - alpha * clean) / sigma
            joint[:, agent] = clean[:, agent]
        return joint

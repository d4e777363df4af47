"""BCQ-MA: multi-agent batch-constrained Q-learning with a linear weighted value decomposition.

The multi-agent BCQ baseline of the OMIGA paper (Wang et al., NeurIPS 2023, Appendix C.2,
/work/shared/papers/omiga.md): local Q_i(o_i, a_i) mixed by

    Q_tot(s, a) = sum_i w_i(s) Q_i(o_i, a_i) + b(s),    w_i(s) >= 0                    (OMIGA Eq. 1)

(``marlbench.nets.LinearMixer``), trained by TD on the dataset, with BCQ's batch constraint
imposed on each agent's *local* action. Because w_i >= 0, the maximum of Q_tot over a product
of per-agent candidate sets is the mixture of the per-agent maxima, so every agent picks its
own constrained greedy action and the decentralised policies stay consistent with Q_tot.

Continuous actions (Fujimoto, Meger, Precup, "Off-Policy Deep RL without Exploration",
ICML 2019, Section 4 and its Algorithm 1):

- a per-agent conditional VAE G_i(a_i | o_i): encoder E(o_i, a_i) -> (mu, sigma), decoder
  D(o_i, z) -> a_i, trained by reconstruction + ``kl_weight`` * KL(N(mu, sigma) || N(0, 1));
  candidates are decoded from z ~ N(0, 1) clipped to [-0.5, 0.5];
- a perturbation network xi_i(o_i, a_i) = Phi * max_action * tanh(.), the
  perturbed action clamped to the action box; max_action is the half-width of the box;
- clipped double Q-learning with BCQ's soft minimum applied to the local values:
  two local critics Q^1_i, Q^2_i, and for each of n decoded and perturbed candidates a'_i at
  o'_i the local target value ``lambda min_j Q'^j_i + (1 - lambda) max_j Q'^j_i``, maximised
  over the candidates per agent, mixed by the target mixer at s':
  ``y = r + gamma (1 - terminal) (sum_i w'_i(s') max_k Q~'_i(o'_i, a'_ik) + b'(s'))``;
- each critic j regresses ``Q^j_tot = sum_i w_i Q^j_i + b`` on y (one mixer for both critics);
- the perturbation network maximises ``Q^1_tot(s, a~) = sum_i w_i(s) Q^1_i(o_i, a~_i) + b(s)``
  at ``a~_i = a_i + xi_i(o_i, a_i)``, a_i decoded by the VAE (w detached: per agent this is
  BCQ's ``max_xi Q^1`` scaled by w_i >= 0);
- acting: the argmax of Q^1_i over n decoded and perturbed candidates (BCQ's policy). BCQ's
  policy has no deterministic form, so ``deterministic=True`` also draws the n latents; the
  argmax over them is the paper's policy.

Discrete actions (Fujimoto, Conti, Ghavamzadeh, Pineau, "Benchmarking Batch Deep RL
Algorithms", 2019, Section 4, discrete BCQ): a per-agent generative model G_i(a_i | o_i)
(masked categorical, trained by behaviour cloning); the allowed actions are the available
ones with ``G_i(a | o_i) / max_{available a^} G_i(a^ | o_i) >= threshold`` (0.3, OMIGA Table 6);
the next action is the allowed argmax of the online Q_i and is evaluated by the target Q'_i
(the paper's double-DQN target), mixed by the target mixer; acting takes the allowed argmax
of Q_i, and ``action_probs`` is that greedy policy (one-hot).

Settings from OMIGA Tables 5-6: Adam, learning rate 5e-4 for the critics with the mixer and
for the actor-side networks (perturbation network, VAE, discrete generative model), target
rate tau 0.005 (Polyak after every update), batch 128, gamma 0.99, hidden 256-256, mixer 64
hidden units, threshold 0.3. From the BCQ paper (OMIGA is silent): Phi 0.05, lambda 0.75,
n = 10 candidates, VAE hidden 750-750, latent dimension 2 * action_dim. From BCQ's
official code (sfujim/BCQ; OMIGA and the paper are silent): KL weight 0.5, latent clip 0.5,
encoder log sigma clamped to [-4, 15], a target copy of the perturbation network for the
next candidates. Our choices where all are silent: one network per role shared by all
agents with a one-hot agent id (as the OMIGA and ComaDICE reference code); one mixer shared
by the two critics (OMIGA Eq. 1 has one w_i(s) per agent); no gradient clipping (neither BCQ
paper clips).

Departures and why:

- the squared TD error also for discrete actions (discrete BCQ uses DQN's Huber loss): the
  linear decomposition cannot fit every joint action exactly (penalty XOR), and the Huber
  loss would then fit a median-like compromise instead of the mixture's least-squares fit
  that OMIGA, ComaDICE and the other baselines here use, which would confound comparisons;
- ``>=`` threshold where the paper writes ``>``: identical except on a measure-zero tie,
  and ``>=`` keeps the most likely action allowed even at threshold 1;
- the discrete generative model is its own network (discrete BCQ shares the Q network's
  trunk and adds 1e-2 times the squared logits to the loss): separate networks keep the
  Q regression independent of the imitation target;
- one optimiser step for all losses (disjoint parameters: the perturbation network's loss
  reads the critics with their parameters frozen), so the actor sees the critics before
  this step's update; BCQ steps the critics first, so its actor sees critics one step newer.

Matrix games (standard profile, 5 seeds; no paper publishes BCQ-MA on them, so these are
our measurements, asserted in tests/test_bcq.py): penalty XOR {AB} 1 (the constraint leaves
only the data's action per agent); {AB, BA} -2: the exact fit needs w_1 (Q_1(B) - Q_1(A)) =
w_2 (Q_2(B) - Q_2(A)), so both agents prefer the same action and the greedy joint action is
(A, A) or (B, B), never a dataset one; {AA, AB, BA} -2: each agent's G gives B half of A's
probability (allowed), the least-squares fit has Q_i(B) > Q_i(A), and BCQ-MA takes the
out-of-distribution (B, B), the failure of value decomposition that REFERENCE.md and InSPO
describe; all four 0 (the fit prefers A). M-NE uniform 20 (C, C); biased 5 (A, A): B and C
have G ratio 0.1 / 0.8 < 0.3 and are excluded. OMSD's 2-D bandit (r = a1 a2, data modes
(0.8, 0.8) and (-0.8, -0.8)): every agent's action stays at a data mode (|a_i| ~ 0.7); which
mode is decided by small asymmetries of the nearly symmetric Q_i, and with the shared Q
network both agents took the same mode on every seed we ran (return about 0.48), which the
method does not guarantee.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.nets import AgentMLP, CategoricalPolicy, LinearMixer, masked_logits
from marlbench.nets.hotpath import flat_mlp, with_agent_ids
from marlbench.nets.targets import frozen_copy, parameters_frozen
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, TargetNet


@dataclass
class BCQConfig(AlgorithmConfig):
    batch_size: int = 128  # transitions per update (OMIGA Table 5)
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target critics, perturbation network and mixer
    q_learning_rate: float = 5e-4  # critics Q_i and the mixer w, b
    policy_learning_rate: float = 5e-4  # perturbation network, VAE, discrete generative model
    hidden: tuple[int, ...] = (256, 256)  # MLP widths of critics, perturbation and generative networks
    mixer_hidden: int = 64  # hypernetwork width of the mixer
    shared_parameters: bool = True  # one network per role with a one-hot agent id (our choice)
    threshold: float = 0.3  # discrete: allowed iff G(a)/max G >= threshold (OMIGA Table 6)
    perturbation_scale: float = 0.05  # Phi of BCQ (paper, Section 5)
    soft_clip_lambda: float = 0.75  # lambda of BCQ's soft clipped double Q (BCQ paper)
    n_candidates: int = 10  # n of BCQ Algorithm 1
    vae_hidden: tuple[int, ...] = (750, 750)  # BCQ paper, supplementary
    latent_dim: int | None = None  # None: 2 * action_dim (BCQ paper)
    kl_weight: float = 0.5  # BCQ official code
    latent_clip: float = 0.5  # BCQ official code: decoder latents clipped to [-0.5, 0.5]


class ConditionalVAE(nn.Module):
    """Per-agent generative model G_i(a_i | o_i) of BCQ: ``[..., N, O]`` observations, ``[..., N, A]`` actions."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...], latent_dim: int, latent_clip: float, shared: bool):
        super().__init__()
        assert spec.action_dim is not None
        n = spec.n_agents
        self.latent_dim = latent_dim
        self.latent_clip = latent_clip
        self.loc = (spec.action_high + spec.action_low) / 2
        self.scale = (spec.action_high - spec.action_low) / 2
        self.encoder = AgentMLP(n, spec.obs_dim + spec.action_dim, 2 * latent_dim, hidden, shared=shared)
        self.decoder = AgentMLP(n, spec.obs_dim + latent_dim, spec.action_dim, hidden, shared=shared)

    def decode(self, obs: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
        """Actions in the box; ``latent=None`` draws z ~ N(0, 1) clipped to ``[-latent_clip, latent_clip]``."""
        if latent is None:
            latent = torch.randn(*obs.shape[:-1], self.latent_dim, device=obs.device)
            latent = latent.clamp(-self.latent_clip, self.latent_clip)
        return self.loc + self.scale * torch.tanh(self.decoder(torch.cat([obs, latent], dim=-1)))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, encoder mean and encoder std (log std clamped to [-4, 15] as in BCQ's code)."""
        mean, log_std = self.encoder(torch.cat([obs, actions], dim=-1)).chunk(2, dim=-1)
        std = log_std.clamp(-4.0, 15.0).exp()
        latent = mean + std * torch.randn_like(std)
        return self.decode(obs, latent), mean, std


def vae_loss(
    reconstruction: torch.Tensor, actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, kl_weight: float
) -> torch.Tensor:
    """BCQ's VAE objective: mean squared reconstruction error + kl_weight * KL(N(mean, std) || N(0, 1)),
    both averaged over all elements."""
    kl = -0.5 * (1.0 + torch.log(std.square()) - mean.square() - std.square()).mean()
    return F.mse_loss(reconstruction, actions) + kl_weight * kl


def allowed_actions(generative_probs: torch.Tensor, avail: torch.Tensor | None, threshold: float) -> torch.Tensor:
    """Discrete BCQ's constraint: available and ``G(a) / max_{available} G >= threshold``; ``[..., nA]`` bool."""
    if avail is not None:
        generative_probs = generative_probs.masked_fill(~avail.bool(), 0.0)
    relative = generative_probs / generative_probs.amax(dim=-1, keepdim=True)
    allowed = relative >= threshold
    return allowed if avail is None else allowed & avail.bool()


def soft_clipped_double_q(q1: torch.Tensor, q2: torch.Tensor, soft_clip_lambda: float) -> torch.Tensor:
    """BCQ's soft clipped double Q: ``lambda min(Q1, Q2) + (1 - lambda) max(Q1, Q2)``."""
    return soft_clip_lambda * torch.minimum(q1, q2) + (1.0 - soft_clip_lambda) * torch.maximum(q1, q2)


@register
class BCQ(Algorithm):
    name = "bcq"
    display_name = "BCQ"
    column_order = 1
    title = "BCQ-MA (multi-agent BCQ of OMIGA App. C.2: local batch constraint, linear weighted decomposition)"
    Config = BCQConfig

    def __init__(self, spec: EnvSpec, config: BCQConfig, device: torch.device):
        super().__init__(spec, config, device)
        n, hidden, shared = spec.n_agents, config.hidden, config.shared_parameters
        self.mixer = LinearMixer(n, spec.state_dim, config.mixer_hidden).to(device)
        self.mixer_target = frozen_copy(self.mixer)
        if spec.discrete:
            assert spec.n_actions is not None
            self.q_net = AgentMLP(n, spec.obs_dim, spec.n_actions, hidden, shared=shared).to(device)
            self.q_target = frozen_copy(self.q_net)
            self.generative = CategoricalPolicy(n, spec.obs_dim, spec.n_actions, hidden, shared=shared).to(device)
            self._eye = torch.eye(n, device=device)
        else:
            assert spec.action_dim is not None
            q_in = spec.obs_dim + spec.action_dim
            self.q1_net = AgentMLP(n, q_in, 1, hidden, shared=shared).to(device)
            self.q2_net = AgentMLP(n, q_in, 1, hidden, shared=shared).to(device)
            self.q1_target = frozen_copy(self.q1_net)
            self.q2_target = frozen_copy(self.q2_net)
            self.perturbation = AgentMLP(n, q_in, spec.action_dim, hidden, shared=shared).to(device)
            self.perturbation_target = frozen_copy(self.perturbation)
            latent_dim = config.latent_dim or 2 * spec.action_dim
            self.vae = ConditionalVAE(spec, config.vae_hidden, latent_dim, config.latent_clip, shared).to(device)
            self._max_perturbation = config.perturbation_scale * (spec.action_high - spec.action_low) / 2

    @property
    def loss_groups(self) -> dict[str, tuple[str, ...]]:
        trains = {"generative_loss": ("generative",), "q_loss": ("q",)}
        return trains if self.spec.discrete else {**trains, "actor_loss": ("perturbation",)}

    def param_groups(self) -> list[ParamGroup]:
        q_lr, policy_lr = self.config.q_learning_rate, self.config.policy_learning_rate
        if self.spec.discrete:
            return [
                ParamGroup("q", [self.q_net, self.mixer], q_lr),
                ParamGroup("generative", [self.generative], policy_lr),
            ]
        return [
            ParamGroup("q", [self.q1_net, self.q2_net, self.mixer], q_lr),
            ParamGroup("generative", [self.vae], policy_lr),
            ParamGroup("perturbation", [self.perturbation], policy_lr),
        ]

    def targets(self) -> list[TargetNet]:
        if self.spec.discrete:
            pairs = [(self.q_net, self.q_target)]
        else:
            pairs = [(self.q1_net, self.q1_target), (self.q2_net, self.q2_target)]
            pairs.append((self.perturbation, self.perturbation_target))
        pairs.append((self.mixer, self.mixer_target))
        return [TargetNet(online, target, self.config.tau) for online, target in pairs]

    def _perturb(self, network: AgentMLP, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """BCQ's perturbation: ``a + Phi * max_action * tanh(xi(o, a))``, clamped to the action box."""
        offset = self._max_perturbation * torch.tanh(network(torch.cat([obs, actions], dim=-1)))
        return (actions + offset).clamp(self.spec.action_low, self.spec.action_high)

    def _candidates(self, obs: torch.Tensor, perturbation: AgentMLP) -> tuple[torch.Tensor, torch.Tensor]:
        """n decoded and perturbed candidates per agent: observations and actions ``[B, n, N, *]``."""
        repeated = obs.unsqueeze(1).expand(-1, self.config.n_candidates, -1, -1)
        return repeated, self._perturb(perturbation, repeated, self.vae.decode(repeated))

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        if self.spec.discrete:
            return self._discrete_losses(batch)
        return self._continuous_losses(batch)

    def _discrete_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs_input = with_agent_ids(self._eye, batch.obs)  # G_i and Q_i
        generative_out = flat_mlp(self.generative.net, obs_input)
        generative_loss = -self.generative.log_prob_of_output(generative_out, batch.actions, batch.avail).mean()
        with torch.no_grad():
            # Discrete BCQ target: allowed argmax of the online Q_i at o', valued by the target Q'_i
            # (0 for an agent with nothing allowed, e.g. a final row without available actions).
            next_input = with_agent_ids(self._eye, batch.next_obs)
            allowed = self._allowed(flat_mlp(self.generative.net, next_input), batch.next_avail)
            next_actions = flat_mlp(self.q_net, next_input).masked_fill(~allowed, -math.inf).argmax(-1, keepdim=True)
            next_q = flat_mlp(self.q_target, next_input).gather(-1, next_actions).squeeze(-1)
            next_q = next_q.masked_fill(~allowed.any(-1), 0.0)
            td_target = batch.reward + cfg.gamma * (1.0 - batch.terminal) * self.mixer_target(next_q, batch.next_state)
        q_taken = flat_mlp(self.q_net, obs_input).gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        q_tot = self.mixer(q_taken, batch.state)  # OMIGA Eq. 1
        return {"generative_loss": generative_loss, "q_loss": F.mse_loss(q_tot, td_target), "q_tot": q_tot}

    def _continuous_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        # VAE G_i(a_i | o_i) (BCQ Algorithm 1, line 5).
        reconstruction, mean, std = self.vae(batch.obs, batch.actions)
        generative_loss = vae_loss(reconstruction, batch.actions, mean, std, cfg.kl_weight)

        with torch.no_grad():
            # BCQ's soft clipped double Q per agent, max over n candidates at o', then OMIGA Eq. 1 (target mixer).
            next_obs, next_candidates = self._candidates(batch.next_obs, self.perturbation_target)
            q_input = torch.cat([next_obs, next_candidates], dim=-1)
            soft_q = soft_clipped_double_q(
                self.q1_target(q_input).squeeze(-1), self.q2_target(q_input).squeeze(-1), cfg.soft_clip_lambda
            )
            next_value = soft_q.amax(dim=1)  # [B, N]
            td_target = batch.reward + cfg.gamma * (1.0 - batch.terminal) * self.mixer_target(
                next_value, batch.next_state
            )

        # Critics: each Q^j_tot = sum_i w_i Q^j_i + b (OMIGA Eq. 1, one mixer) regressed on y.
        data_input = torch.cat([batch.obs, batch.actions], dim=-1)
        weights, bias = self.mixer.parts(batch.state)
        q1_tot = (weights * self.q1_net(data_input).squeeze(-1)).sum(-1) + bias
        q2_tot = (weights * self.q2_net(data_input).squeeze(-1)).sum(-1) + bias
        q_loss = F.mse_loss(q1_tot, td_target) + F.mse_loss(q2_tot, td_target)

        # Perturbation network: max Q^1_tot(s, a + xi(o, a)), a decoded by the VAE (BCQ Algorithm 1,
        # line 12), on the critics before this step's update (their parameters frozen, w detached).
        with torch.no_grad():
            decoded = self.vae.decode(batch.obs)
        perturbed = self._perturb(self.perturbation, batch.obs, decoded)
        with parameters_frozen(self.q1_net):
            q1_perturbed = self.q1_net(torch.cat([batch.obs, perturbed], dim=-1)).squeeze(-1)
        actor_loss = -(weights.detach() * q1_perturbed).sum(-1).mean()
        return {"generative_loss": generative_loss, "q_loss": q_loss, "actor_loss": actor_loss, "q_tot": q1_tot}

    def _allowed(self, generative_logits: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        """The constraint's allowed actions given G_i's logits (none for an agent without available actions)."""
        some = None if avail is None else avail.bool() | ~avail.bool().any(dim=-1, keepdim=True)
        probs = masked_logits(generative_logits, some).softmax(dim=-1)
        return allowed_actions(probs, avail, self.config.threshold)

    def _greedy_discrete(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        obs_input = with_agent_ids(self._eye, obs)
        allowed = self._allowed(flat_mlp(self.generative.net, obs_input), avail)
        return flat_mlp(self.q_net, obs_input).masked_fill(~allowed, -math.inf).argmax(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        if self.spec.discrete:
            return self._greedy_discrete(obs, avail)
        # BCQ's policy: the argmax of Q^1_i over n decoded and perturbed candidates, per agent.
        repeated, candidates = self._candidates(obs, self.perturbation)
        q1 = self.q1_net(torch.cat([repeated, candidates], dim=-1))  # [B, n, N, 1]
        best = q1.argmax(dim=1, keepdim=True).expand(-1, 1, -1, candidates.shape[-1])
        return candidates.gather(1, best).squeeze(1)

    @torch.no_grad()
    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        if not self.spec.discrete:
            return super().action_probs(obs, avail)
        assert self.spec.n_actions is not None
        return F.one_hot(self._greedy_discrete(obs, avail), self.spec.n_actions).to(obs.dtype)

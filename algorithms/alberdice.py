"""AlberDICE: alternating best responses by stationary distribution correction estimation.

Matsunaga, Lee, Yoon, Leonardos, Abbeel, Kim, "AlberDICE: Addressing Out-Of-Distribution
Joint Actions in Offline Multi-Agent RL via Alternating Stationary Distribution Correction
Estimation", NeurIPS 2023. Official code: github.com/dematsunaga/alberdice
(``pymarl-master/src/learners/alberdice_learner.py``), read for its settings only.

With the other agents' policies ``pi_{-i}`` fixed, agent i solves a regularised LP over its
own stationary distribution ``d_i(s, a_i)``, regularised towards the dataset in the JOINT
action space:

    max_{d_i >= 0}  E_{d_i(s,a_i) pi_{-i}(a_{-i}|s)}[r(s, a)]
                    - alpha KL(d_i(s,a_i) pi_{-i}(a_{-i}|s) || d^D(s, a_i, a_{-i}))        (LP)
    s.t. Bellman flow of d_i pi_{-i}.

With ``d^D(s,a) = d^D(s,a_i) pi^D(a_{-i}|s,a_i)`` the KL splits into
``KL(d_i || d^D(s,a_i)) + E_{d_i}[KL(pi_{-i}(.|s) || pi^D(.|s,a_i))]`` (KL split), and the
Lagrangian dual over ``nu_i(s)`` has the closed-form ratio
``w_i(s,a_i) = d_i/d^D ~ exp(e_i(s,a_i)/alpha)`` with

    e_i(s, a_i) = E_{a_{-i}~pi_{-i}, s'}[r + gamma nu_i(s')] - alpha KL(pi_{-i}(.|s) || pi^D(.|s,a_i)) - nu_i(s)   (e)

and the numerically stable normalised dual (log-sum-exp form)

    L(nu_i) = (1 - gamma) E_{p0}[nu_i(s0)] + alpha log E_{d^D(s,a_i), a_{-i}~pi_{-i}}[exp(e_hat_i / alpha)]   (nu)

where ``e_hat_i = r - alpha KL_i(s,a_i) + gamma nu_i(s') - nu_i(s)`` is a one-sample estimate of (e).
Expectations under ``pi_{-i}`` are taken on the data by resampling transitions in proportion
to ``rho_i = prod_{j != i} pi_j(a_j|o_j) / pi^D(a_j|s, a_i, a_{<j})`` (ratio), clipped at
``ratio_max`` = 100; ``E_{d^D}[rho f] = E_{d^D}[rho] E_resampled[f]``. The autoregressive
behaviour model ``pi^D(a_j | s, a_i, a_{<j})`` (other agents in index order, i first) is
fitted by teacher-forced behaviour cloning. An ``e_i(s, a_i)`` network regresses ``e_hat_i``
on the resampled data (e-regression), and each decentralised policy is extracted by the
I-projection

    min_{pi_i} E_s[ -E_{a_i~pi_i}[e_i(s, a_i)] + alpha KL(pi_i(.|o_i) || pi^D_i(.|o_i)) ]          (I-proj)

(the ``log w`` of (e) up to a constant, times alpha). Every training step is one alternating
sweep, one optimisation stage per agent: agents 0..N-1 in turn update ``nu_i``, ``e_i`` and
``pi_i`` while the others are held fixed, so agent i already responds to the agents updated
before it in the same sweep.

Why the KL enters ``e_hat`` as an expectation: after resampling by ``rho_i``, the pointwise
``-alpha log rho_i`` of the dataset's own ``a_{-i}`` would cancel the resampling weight inside
``exp(e_hat/alpha)`` and (nu) would stop depending on ``pi_{-i}``; the expected KL keeps
the joint-action regulariser. The reference code does the same (Monte-Carlo KL with 16
samples of ``a_{-i}~pi_{-i}``). For discrete actions we sample the prefixes ``a_{<j}`` and
take each factor's KL exactly (an unbiased, lower-variance version of the same estimate).

Settings from the reference code (alberdice.yaml, default.yaml, the learner and its critic
module; we could not consult the paper's appendix): per-agent ``nu_i`` and ``e_i`` MLPs
128-128 on the global state; per-agent policies 128-128 with their last layer initialised in
U(-1e-3, 1e-3) (a uniform start); Adam with learning rate 1e-4 for ``nu``, ``e`` and ``pi``, no
gradient clipping; gamma 0.99; alpha annealed geometrically from 5 to 0.001; rho clipped at
100; a gradient penalty ``0.1 E||grad_s nu_i(s~)||^2`` on random interpolations ``s~`` of batch
states; a conservative term ``0.1 (logsumexp_a e_i(s, a) - E_{pi^D_i}[e_i(s, .)])`` added to the
e-regression; the marginal behaviour policy ``pi^D_i(a_i|o_i)`` of (I-proj) is one network
shared by all agents with a one-hot id; agents updated in the fixed order 0..N-1; the
I-projection reads ``e_i`` as it was before this step's update of ``e_i``.

Our choices, each a departure from the reference code where it differs:

- Behaviour models are pretrained for the first ``pretrain_fraction`` (10%) of the run
  (Adam 1e-3, the learning rate of this repo's BC) and then frozen; the reference trains
  them alongside the rest from step 0 at 1e-4, so its early ratios compare against an
  untrained ``pi^D``.
- Batches are ``batch_size`` transitions (128; profiles may override it); the reference
  samples whole episodes (16 on its matrix game, 128 on Bridge).
- alpha decays geometrically from ``alpha_start`` right after pretraining to ``alpha_end``
  at the run's last step, as the reference anneals over its whole run (t/t_max); the
  trainer gives the run's length (``resolve_schedule``). ``anneal_steps`` and
  ``pretrain_steps`` set explicitly replace the run-relative defaults.
- The initial-state term uses the batch's episode starts, as the objective says; the
  reference code evaluates it on all dataset states.
- Terminal transitions lead to an absorbing state (the log-sum-exp dual is unbounded
  without one): ``nu_i(absorbing)`` is a learned scalar per agent, and the data distribution
  holds one absorbing self-transition (reward 0, ratio 1, no KL) per terminal transition, the
  ValueDICE/DemoDICE convention; the reference pads every episode with absorbing steps up to
  the episode limit instead.
- The autoregressive behaviour model has separate parameters per conditioning agent i (as
  the reference) and a one-hot id of the predicted agent j; unavailable actions are masked.
  The reference evaluates ``pi^D`` on the dataset's prefixes even for the sampled ``a_{-i}``
  of its KL estimate, which is wrong for more than two agents; we condition on the sampled
  prefixes.
- ``e_i`` has one output per own action (discrete) instead of an action input; the same
  function class, one forward pass.

Symmetric data ({AB, BA}): both marginals are 50/50, so decentralised argmax has no
preferred joint action. The alternating best response breaks the tie: pi^D(a_1 | a_0) is
deterministic, so once agent 1 leans to A even slightly, KL(pi_1 || pi^D(.|a_0)) is larger
for a_0 = A than for a_0 = B, agent 0's best response is B, and that pushes agent 1 further
to A; each seed ends on (A, B) or (B, A) with probability ~1.

Budget. On penalty XOR (batch 64, expected return of the stochastic joint policy) these
settings reach the published optimum 1.00 when alpha is annealed over 2000 updates, the
matrix suite's standard budget. With 1000 updates {AA, AB, BA} fails (0.03 +- 0.53 over 5
seeds): alpha is already small while the policies are still soft, the joint-action KL
(alpha times a bounded log-ratio) no longer holds them off the out-of-distribution (B, B).
Raising the learning rates tenfold to fit 1000 updates does not help reliably (3 of 5
seeds): with Adam and the matrix games' constant inputs some seeds' policy networks lose
all their ReLU units.

Equilibria. On one-step games of our own with every joint action in the data (a 3x3 game
whose first-row trap is not an equilibrium, a 3-agent 2x2x2 game), the final joint policy
is a Nash equilibrium (``tests/test_alberdice_equilibrium.py``). Before the schedule was
made relative to the run, a suite not named ``matrix`` got 20,000 pretraining steps, so
runs of 1,000 or 5,000 steps never left behaviour cloning and greedy evaluation read off
the policies' near-uniform initialisation: an arbitrary joint action, not an equilibrium.

Continuous actions (the paper and the reference code are discrete-only; this extension is
ours): policies are tanh-Gaussian; the behaviour models (marginal and autoregressive) are
Gaussian with a state-dependent diagonal covariance (log std in [-5, 2]); ``e_i`` takes
``(s, a_i)`` as input; the KL of (e) is a Monte-Carlo estimate with ``kl_samples`` samples;
(I-proj) uses reparameterised samples of ``pi_i``; the conservative term's log-sum-exp over
actions becomes ``log(volume) + logmeanexp`` over ``conservative_samples`` uniform actions
in the box, minus ``e_i`` at the dataset action.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from marlbench.algorithm import Algorithm, AlgorithmConfig, register, require_resolved, steps_of_run
from marlbench.data.sampler import Batch
from marlbench.errors import ConfigError
from marlbench.nets import AgentMLP, AgentPolicies, AutoregressiveBehaviour, mask_unavailable, masked_log_softmax, mlp
from marlbench.nets.targets import parameters_frozen
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, Phase, Stage

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
LAST_LAYER_INIT = 1e-3  # reference: policy output weights ~ U(-1e-3, 1e-3)
ROLES = (("nu_loss", "nu"), ("e_loss", "e"), ("policy_loss", "policy"))  # each agent's losses and their groups


@dataclass
class AlberDICEConfig(AlgorithmConfig):
    batch_size: int = 128  # transitions per update (the reference samples whole episodes)
    hidden: tuple[int, ...] = (128, 128)  # MLP widths of every network (reference)
    gamma: float = 0.99  # discount (reference)
    alpha_start: float = 5.0  # alpha right after pretraining (reference)
    alpha_end: float = 0.001  # alpha at anneal_steps (reference)
    anneal_steps: int | None = None  # step at which alpha reaches alpha_end; None: the run's last step (reference)
    pretrain_steps: int | None = None  # behaviour cloning of pi^D_i and the autoregressive pi^D; None: by fraction
    pretrain_fraction: float = 0.1  # ours: pretraining length as a fraction of the run, when pretrain_steps is None
    behaviour_lr: float = 1e-3  # ours: Adam for the behaviour models (this repo's BC)
    policy_lr: float = 1e-4  # Adam for pi_i (reference)
    nu_lr: float = 1e-4  # Adam for nu_i (reference)
    e_lr: float = 1e-4  # Adam for e_i (reference)
    ratio_max: float = 100.0  # clip of the resampling ratio rho_i (reference)
    nu_grad_penalty: float = 0.1  # weight of the gradient penalty on nu_i (reference)
    e_conservative: float = 0.1  # weight of the conservative term of the e-regression (reference)
    kl_samples: int = 16  # samples of a_{-i} for the KL of (e) (reference)
    conservative_samples: int = 10  # ours, continuous actions only: uniform actions of the conservative term


# ----------------------------------------------------------------------------- equations
def clipped_log_ratio(
    policy_logp: torch.Tensor, behaviour_logp: torch.Tensor, agent: int, ratio_max: float
) -> torch.Tensor:
    """(ratio): ``log min(prod_{j != i} pi_j(a_j|o_j) / pi^D(a_j|s, a_i, a_{<j}), ratio_max)``.

    ``policy_logp [B, N]``: each agent's log-probability of its dataset action;
    ``behaviour_logp [B, N]``: entry j is ``log pi^D(a_j | s, a_i, a_{<j})`` for conditioning
    agent i = ``agent`` (entry i is ignored). Returns ``[B]``.
    """
    others = torch.arange(policy_logp.shape[-1], device=policy_logp.device) != agent
    log_ratio = torch.where(others, policy_logp - behaviour_logp, 0.0).sum(-1)
    return log_ratio.clamp(max=math.log(ratio_max))


def resample(log_ratio: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``len(log_ratio)`` draws with replacement, ``P(k) proportional to rho_k``."""
    weights = torch.exp(log_ratio - log_ratio.max())
    return torch.multinomial(weights, log_ratio.shape[0], replacement=True, generator=generator)


def nu_loss(
    e_hat: torch.Tensor,
    log_mean_ratio: torch.Tensor,
    nu_initial: torch.Tensor,
    nu_absorbing: torch.Tensor,
    n_terminal: torch.Tensor,
    alpha: float,
    gamma: float,
) -> torch.Tensor:
    """(nu): ``(1-gamma) E_{p0}[nu(s0)] + alpha log E_{d^D+abs}[rho exp(e_hat / alpha)]``.

    ``e_hat [B]`` on the resampled transitions (so ``E_{d^D}[rho f] = mean(rho) * mean_resampled f``),
    ``log_mean_ratio`` = ``log mean(rho)`` over the original batch, ``n_terminal`` the number of
    terminal transitions in it: the data distribution also holds that many absorbing
    self-transitions with ``e_hat = gamma nu_abs - nu_abs`` (reward 0, rho 1, no KL).
    """
    batch = e_hat.shape[0]
    real = log_mean_ratio + torch.logsumexp(e_hat / alpha, dim=0)  # log sum_k rho_k exp(e_k / alpha)
    absorbing = -(1.0 - gamma) * nu_absorbing / alpha + torch.log(n_terminal)
    log_expectation = torch.logsumexp(torch.stack([real, absorbing]), dim=0) - torch.log(batch + n_terminal)
    return alpha * log_expectation + (1.0 - gamma) * nu_initial.mean()


def e_loss_discrete(
    e_all: torch.Tensor,
    actions: torch.Tensor,
    e_hat: torch.Tensor,
    behaviour_probs: torch.Tensor,
    avail: torch.Tensor | None,
    conservative: float,
) -> torch.Tensor:
    """(e-regression): ``mean (e_i(s,a_i) - e_hat)^2 + c (logsumexp_a e_i(s,a) - E_{pi^D_i}[e_i(s,.)])``.

    ``e_all [B, nA]``, ``actions [B]``, ``e_hat [B]`` (a detached target), ``behaviour_probs [B, nA]``.
    """
    e_pred = e_all.gather(-1, actions[:, None]).squeeze(-1)
    regression = (e_pred - e_hat).pow(2).mean()
    soft_max = torch.logsumexp(mask_unavailable(e_all, avail), dim=-1)
    return regression + conservative * (soft_max - (behaviour_probs * e_all).sum(-1)).mean()


def i_projection_loss_discrete(
    logp: torch.Tensor, e_all: torch.Tensor, behaviour_logp: torch.Tensor, avail: torch.Tensor | None, alpha: float
) -> torch.Tensor:
    """(I-proj): ``-E_s[sum_a pi(a) e(s,a) - alpha KL(pi || pi^D_i)]``; all inputs ``[B, nA]``."""
    probs = logp.exp()
    log_diff = logp - behaviour_logp
    if avail is not None:
        log_diff = torch.where(avail, log_diff, 0.0)
    kl = (probs * log_diff).sum(-1)
    return -((probs * e_all).sum(-1) - alpha * kl).mean()


def categorical_kl(logp: torch.Tensor, logq: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """``KL(p || q)`` over the last dim, unavailable actions left out."""
    log_diff = logp - logq
    if avail is not None:
        log_diff = torch.where(avail, log_diff, 0.0)
    return (logp.exp() * log_diff).sum(-1)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log density summed over the last dim."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gaussian behaviour model's ``(mean, log_std)`` from its output ``[..., 2A]`` (log std in [-5, 2])."""
    mean, log_std = out.chunk(2, dim=-1)
    return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)


def annealed_alpha(step: int, config: AlberDICEConfig) -> float:
    """alpha_start after pretraining, geometric decay to alpha_end at ``anneal_steps``, then constant."""
    span = max(config.anneal_steps - config.pretrain_steps - 1, 1)
    progress = min(max((step - config.pretrain_steps - 1) / span, 0.0), 1.0)
    return config.alpha_start * (config.alpha_end / config.alpha_start) ** progress


# ----------------------------------------------------------------------------- networks
class _Nu(nn.Module):
    """``nu_i(s)`` plus a learned ``nu_i(absorbing)``."""

    def __init__(self, state_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(state_dim, 1, hidden)
        self.absorbing = nn.Parameter(torch.zeros(()))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).squeeze(-1)


def _shrink_last_layer(module: nn.Module) -> None:
    last = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.uniform_(last.weight, -LAST_LAYER_INIT, LAST_LAYER_INIT)
    nn.init.zeros_(last.bias)


@dataclass
class _Sweep:
    """What the stages of one alternating sweep share; agent 0's stage builds it."""

    alpha: float
    ar_logp: torch.Tensor  # teacher-forced log pi^D(a_j | s, a_i, a_{<j}) of the data, [B, N_i, N_j]
    behaviour_out: torch.Tensor  # the marginal pi^D_i's outputs [B, N, out]
    policy_out: torch.Tensor  # every pi_j's outputs [B, N, out]; column j refreshed after pi_j's step
    policy_logp: torch.Tensor  # log pi_j(a_j^D | o_j) [B, N], refreshed likewise
    n_terminal: torch.Tensor
    logs: defaultdict[str, list[torch.Tensor]]


# ----------------------------------------------------------------------------- algorithm
@register
class AlberDICE(Algorithm):
    name = "alberdice"
    display_name = "AlberDICE"
    column_order = 7
    title = "AlberDICE (alternating best responses by DICE, joint-action regularisation)"
    Config = AlberDICEConfig

    @classmethod
    def resolve_schedule(cls, config: AlberDICEConfig, total_steps: int) -> AlberDICEConfig:
        pretrain = steps_of_run(cls.name, "pretrain", config.pretrain_steps, config.pretrain_fraction, total_steps)
        anneal = total_steps if config.anneal_steps is None else config.anneal_steps
        return dataclasses.replace(config, pretrain_steps=pretrain, anneal_steps=anneal)

    def __init__(self, spec: EnvSpec, config: AlberDICEConfig, device: torch.device):
        super().__init__(spec, config, device)
        require_resolved(self.name, config, ("pretrain_steps", "anneal_steps"))
        if config.anneal_steps <= config.pretrain_steps:
            raise ConfigError(
                f"alberdice: anneal_steps ({config.anneal_steps}) must exceed pretrain_steps ({config.pretrain_steps})"
            )
        n, hidden = spec.n_agents, tuple(config.hidden)
        self.n_agents = n
        width, out = (spec.n_actions, spec.n_actions) if spec.discrete else (spec.action_dim, 2 * spec.action_dim)
        # Behaviour models: pi^D_i(a_i | o_i) (shared, with id) and pi^D(a_j | s, a_i, a_{<j}).
        self.behaviour = AgentMLP(n, spec.obs_dim, out, hidden, agent_id=True, shared=True).to(device)
        self.ar_behaviour = AutoregressiveBehaviour(n, spec.state_dim, width, out, hidden).to(device)
        # Per-agent nu_i(s), e_i(s, .) (one output per own action) or e_i(s, a_i), and decentralised pi_i(a_i | o_i).
        self.nus = nn.ModuleList(_Nu(spec.state_dim, hidden) for _ in range(n)).to(device)
        e_in, e_out = (spec.state_dim, spec.n_actions) if spec.discrete else (spec.state_dim + spec.action_dim, 1)
        self.es = nn.ModuleList(mlp(e_in, e_out, hidden) for _ in range(n)).to(device)
        self.policies = AgentPolicies(spec, hidden)
        for policy in self.policies:
            _shrink_last_layer(policy)
        self.policies.to(device)
        self._sweep: _Sweep | None = None

    def param_groups(self) -> list[ParamGroup]:
        cfg = self.config
        return [
            ParamGroup("behaviour", [self.behaviour, self.ar_behaviour], cfg.behaviour_lr),
            ParamGroup("nu", [self.nus], cfg.nu_lr),
            ParamGroup("e", [self.es], cfg.e_lr),
            ParamGroup("policy", [self.policies], cfg.policy_lr),
        ]

    def phases(self) -> list[Phase]:
        """Behaviour cloning, then one alternating sweep per step: a stage per agent in the order
        0..N-1, whose losses reach agent i's networks only (the others hold no gradient, so the
        step leaves them alone). Agent i's stage logs its losses as ``nu_loss/i`` etc.; the last
        one also their means over the agents as ``nu_loss`` etc."""
        cloning = {"behaviour_loss": ("behaviour",), "ar_behaviour_loss": ("behaviour",)}
        sweep = [
            Stage(f"agent {i}", partial(self._agent_losses, i), {f"{loss}/{i}": (group,) for loss, group in ROLES})
            for i in range(self.n_agents)
        ]
        return [
            Phase("behaviour_pretraining", 1, (Stage("behaviour", self._behaviour_losses, cloning),)),
            Phase("best_responses", self.config.pretrain_steps + 1, tuple(sweep)),
        ]

    # ------------------------------------------------------------------ behaviour models
    def _ar_log_prob_data(self, batch: Batch) -> torch.Tensor:
        """Teacher-forced ``log pi^D(a_j | s, a_i, a_{<j})`` of the dataset actions, ``[B, N_i, N_j]``."""
        out = self.ar_behaviour(batch.state, batch.actions)
        if self.spec.discrete:
            logp = masked_log_softmax(out, None if batch.avail is None else batch.avail[:, None])
            index = batch.actions[:, None, :, None].expand(-1, self.n_agents, -1, 1)
            return logp.gather(-1, index).squeeze(-1)
        return gaussian_log_prob(*gaussian(out), batch.actions[:, None].float())

    def _behaviour_losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """Behaviour cloning of ``pi^D_i(a_i|o_i)`` and teacher-forced BC of the autoregressive ``pi^D``."""
        out = self.behaviour(batch.obs)
        if self.spec.discrete:
            marginal = masked_log_softmax(out, batch.avail).gather(-1, batch.actions[..., None]).squeeze(-1)
        else:
            marginal = gaussian_log_prob(*gaussian(out), batch.actions.float())
        ar = self._ar_log_prob_data(batch)
        off_diagonal = 1.0 - torch.eye(self.n_agents, device=ar.device)
        ar_loss = -(ar * off_diagonal).sum((-2, -1)).mean() / max(self.n_agents * (self.n_agents - 1), 1)
        return {"behaviour_loss": -marginal.mean(), "ar_behaviour_loss": ar_loss}

    # ------------------------------------------------------------------ the alternating sweep
    def _policy_stats(self, agent: int, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Agent j's policy outputs ``[B, out]`` and ``log pi_j(a_j^D | o_j)`` ``[B]``."""
        out, avail = self.policies.output(agent, batch.obs), None if batch.avail is None else batch.avail[:, agent]
        return out, self.policies[agent].log_prob_of_output(out, batch.actions[:, agent], avail)

    @torch.no_grad()
    def _start_sweep(self, batch: Batch, step: int) -> _Sweep:
        outs, logps = zip(*(self._policy_stats(j, batch) for j in range(self.n_agents)), strict=True)
        return _Sweep(
            alpha=annealed_alpha(step, self.config),
            ar_logp=self._ar_log_prob_data(batch),
            behaviour_out=self.behaviour(batch.obs),
            policy_out=torch.stack(outs, 1),
            policy_logp=torch.stack(logps, -1),
            n_terminal=batch.terminal.sum(),
            logs=defaultdict(list),
        )

    def _other_agents_kl(self, agent: int, state: torch.Tensor, actions: torch.Tensor, avail, out) -> torch.Tensor:
        """``KL(pi_{-i}(.|s) || pi^D(.|s, a_i))`` for the rows' own ``a_i`` (e), ``[B]``; ``out [B, N, *]``:
        every policy's outputs on the rows.

        ``a_{-i}`` is drawn from the current policies (``kl_samples`` draws); the discrete case
        sums each factor's exact KL given the sampled prefix, the continuous case the log ratio.
        """
        n = self.n_agents
        # Discrete, two agents: the one factor has no sampled prefix, so one draw gives the exact KL.
        k = 1 if self.spec.discrete and n <= 2 else self.config.kl_samples
        own = torch.arange(n, device=state.device) == agent
        others = self.ar_behaviour.others[agent]
        if self.spec.discrete:
            logp = masked_log_softmax(out, avail)  # [B, N, nA]
            flat = logp.exp().reshape(-1, logp.shape[-1])
            sampled = torch.multinomial(flat, k, replacement=True).reshape(*logp.shape[:2], k).permute(2, 0, 1)
            joint = torch.where(own, actions, sampled)  # [K, B, N]; agent i keeps its dataset action
            other_avail = None if avail is None else avail[:, others]
            logq = masked_log_softmax(self.ar_behaviour.conditional(state, joint, agent), other_avail)
            kl = categorical_kl(logp[:, others], logq, other_avail)  # [K, B, N-1]
        else:
            policy = self.policies[0]  # every agent's tanh-Gaussian has the same box
            mean, log_std = policy.mean_log_std(out)  # [B, N, A]
            u = mean + log_std.exp() * torch.randn((k, *mean.shape), device=mean.device)
            joint = torch.where(own[:, None], actions.float(), policy.squash(u))
            mean_d, log_std_d = gaussian(self.ar_behaviour.conditional(state, joint, agent))
            logq = gaussian_log_prob(mean_d, log_std_d, joint[..., others, :])
            kl = policy.log_prob_pre_tanh(mean, log_std, u)[..., others] - logq
        return kl.sum(-1).mean(0)

    def _agent_losses(self, i: int, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """Agent i's step of the sweep: (nu), (e-regression) and (I-proj) on transitions resampled by rho_i."""
        cfg, n = self.config, self.n_agents
        if i == 0:
            self._sweep = self._start_sweep(batch, step)
        else:  # agent i - 1 has taken its step: agent i responds to its new policy
            with torch.no_grad():
                self._sweep.policy_out[:, i - 1], self._sweep.policy_logp[:, i - 1] = self._policy_stats(i - 1, batch)
        sweep = self._sweep
        alpha, gamma, batch_size = sweep.alpha, cfg.gamma, batch.reward.shape[0]
        # (ratio) and resampling: transitions drawn in proportion to rho_i under the current pi_{-i}.
        with torch.no_grad():
            log_ratio = clipped_log_ratio(sweep.policy_logp, sweep.ar_logp[:, i], i, cfg.ratio_max)
            log_mean_ratio = torch.logsumexp(log_ratio, 0) - math.log(batch_size)
            idx = resample(log_ratio)
            avail = None if batch.avail is None else batch.avail[idx]
            state, actions = batch.state[idx], batch.actions[idx]
            kl = self._other_agents_kl(i, state, actions, avail, sweep.policy_out[idx])

        # (nu) for nu_i. A terminal transition's successor is the absorbing state.
        nu = self.nus[i]
        nu_next, nu_now, nu_initial = nu(torch.cat([batch.next_state[idx], state, batch.initial_state])).split(
            [batch_size, batch_size, batch.initial_state.shape[0]]
        )
        next_value = torch.where(batch.terminal[idx] > 0, nu.absorbing, nu_next)
        e_hat = batch.reward[idx] - alpha * kl + gamma * next_value - nu_now
        loss_nu = nu_loss(e_hat, log_mean_ratio, nu_initial, nu.absorbing, sweep.n_terminal, alpha, gamma)
        if cfg.nu_grad_penalty > 0:
            mix = torch.rand(batch_size, 1, device=state.device)
            perm = torch.randperm(batch_size, device=state.device)
            inter = (mix * batch.state + (1 - mix) * batch.state[perm]).requires_grad_(True)
            (grad,) = torch.autograd.grad(nu(inter).sum(), inter, create_graph=True)
            loss_nu = loss_nu + cfg.nu_grad_penalty * grad.pow(2).sum(-1).mean()
        target = e_hat.detach()

        # (e-regression) for e_i and (I-proj) for pi_i on the resampled transitions; like the
        # reference, the I-projection reads e_i before this step's update of e_i.
        e_net, policy = self.es[i], self.policies[i]
        obs_i, behaviour_out = batch.obs[idx, i : i + 1], sweep.behaviour_out[idx, i]
        if self.spec.discrete:
            e_all = e_net(state)
            agent_avail = None if avail is None else avail[:, i]
            behaviour_logp = masked_log_softmax(behaviour_out, agent_avail)
            loss_e = e_loss_discrete(
                e_all, actions[:, i], target, behaviour_logp.exp(), agent_avail, cfg.e_conservative
            )
            logp = masked_log_softmax(policy.net(obs_i)[:, 0], agent_avail)
            loss_pi = i_projection_loss_discrete(logp, e_all.detach(), behaviour_logp, agent_avail, alpha)
        else:
            loss_e = self._e_loss_continuous(e_net, state, actions[:, i], target)
            sampled, logp = policy.sample(obs_i)
            with parameters_frozen(e_net):  # the policy's gradient passes through e_i to the action only
                e_sampled = e_net(torch.cat([state, sampled[:, 0]], -1)).squeeze(-1)
            kl_own = logp[:, 0] - gaussian_log_prob(*gaussian(behaviour_out), sampled[:, 0])
            loss_pi = -(e_sampled - alpha * kl_own).mean()

        for key, value in (("nu_loss", loss_nu), ("e_loss", loss_e), ("policy_loss", loss_pi), ("kl", kl.mean())):
            sweep.logs[key].append(value.detach())
        sweep.logs["ratio"].append(log_mean_ratio.exp())
        losses = {f"nu_loss/{i}": loss_nu, f"e_loss/{i}": loss_e, f"policy_loss/{i}": loss_pi}
        if i == n - 1:
            losses |= {key: torch.stack(values) for key, values in sweep.logs.items()}  # logged as the means
            losses["alpha"] = torch.tensor(alpha)
        return losses

    def _e_loss_continuous(
        self, e_net: nn.Module, state: torch.Tensor, actions: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """(e-regression) for continuous actions, with the uniform-sample analogue of the conservative term."""
        e_pred = e_net(torch.cat([state, actions], -1)).squeeze(-1)
        loss = (e_pred - target).pow(2).mean()
        if self.config.e_conservative > 0:
            m, dim = self.config.conservative_samples, self.spec.action_dim
            low, high = self.spec.action_low, self.spec.action_high
            uniform = low + (high - low) * torch.rand((m, *actions.shape), device=state.device)
            e_uniform = e_net(torch.cat([state.expand(m, *state.shape), uniform], -1)).squeeze(-1)  # [M, B]
            log_volume = dim * math.log(high - low)
            soft_max = torch.logsumexp(e_uniform, 0) - math.log(m) + log_volume
            loss = loss + self.config.e_conservative * (soft_max - e_pred).mean()
        return loss

    # ------------------------------------------------------------------ acting
    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policies.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policies.probs(obs, avail)

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

(the ``log w`` of (e) up to a constant, times alpha). Every ``update`` runs one alternating
sweep: agents 0..N-1 in turn update ``nu_i``, ``e_i`` and ``pi_i`` while the others are held
fixed, so agent i already responds to the agents updated before it in the same sweep.

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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.algorithm import Algorithm, AlgorithmConfig, register, require_resolved, steps_of_run
from marlbench.data.sampler import Batch
from marlbench.errors import ConfigError
from marlbench.nets import AgentLinear, AgentMLP, CategoricalPolicy, TanhGaussianPolicy, mlp
from marlbench.spec import EnvSpec

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
LAST_LAYER_INIT = 1e-3  # reference: policy output weights ~ U(-1e-3, 1e-3)


def _mask(logits: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """Unavailable actions get ``finfo.min`` (as ``nets.masked_logits``, without its host-side check:
    the dataset's rows always have an available action)."""
    return logits if avail is None else logits.masked_fill(~avail, torch.finfo(logits.dtype).min)


@dataclass
class AlberDICEConfig(AlgorithmConfig):
    batch_size: int = 128
    hidden: tuple[int, ...] = (128, 128)
    gamma: float = 0.99
    alpha_start: float = 5.0
    alpha_end: float = 0.001
    anneal_steps: int | None = (
        None  # step at which alpha reaches alpha_end; None: the run's last step (reference: t/t_max)
    )
    pretrain_steps: int | None = (
        None  # behaviour cloning of pi^D_i and of the autoregressive pi^D first; None: by fraction
    )
    pretrain_fraction: float = 0.1  # ours: pretraining length as a fraction of the run, when pretrain_steps is None
    behaviour_lr: float = 1e-3  # our pretraining phase; the learning rate of this repo's BC
    policy_lr: float = 1e-4
    nu_lr: float = 1e-4
    e_lr: float = 1e-4
    ratio_max: float = 100.0
    nu_grad_penalty: float = 0.1
    e_conservative: float = 0.1
    kl_samples: int = 16
    conservative_samples: int = 10  # continuous actions only


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
    soft_max = torch.logsumexp(_mask(e_all, avail), dim=-1)
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


class _AutoregressiveBehaviour(nn.Module):
    """``pi^D(a_j | s, a_i, a_{<j})``: for each conditioning agent i its own MLP (as the reference)
    on ``[s, onehot(j), masked joint action]``; the masked joint action holds ``a_i`` and the
    actions of the other agents before j, zeros elsewhere.

    The first layer is applied in parts (state, id, actions), so the state's share is computed
    once per row rather than once per predicted agent and sample; the function is the same.
    """

    def __init__(self, n_agents: int, state_dim: int, action_enc: int, out_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.n_agents, self.state_dim = n_agents, state_dim
        in_dim = state_dim + n_agents + n_agents * action_enc
        self.net = AgentMLP(n_agents, in_dim, out_dim, hidden, agent_id=False, shared=False)

    def _first(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        first = self.net.net[0]
        s, n = self.state_dim, self.n_agents
        return first.weight[:, :s], first.weight[:, s : s + n], first.weight[:, s + n :], first.bias

    def forward(self, state: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Every conditioning agent at once: ``state [B, S]``, ``acts [B, N_i, N_j, N*A]`` -> ``[B, N_i, N_j, out]``."""
        w_state, w_id, w_act, bias = self._first()
        h = (
            torch.einsum("bs,ish->bih", state, w_state)[:, :, None]
            + w_id[None]
            + torch.einsum("bijk,ikh->bijh", acts, w_act)
            + bias[None, :, None]
        )
        x = h.transpose(1, 2)  # [B, N_j, N_i, h]: AgentLinear layers act over the agent dim -2
        for layer in list(self.net.net)[1:]:
            x = layer(x)
        return x.transpose(1, 2)

    def forward_agent(
        self, state: torch.Tensor, acts: torch.Tensor, agent: int, predicted: torch.Tensor
    ) -> torch.Tensor:
        """Conditioning agent ``agent``, predicted agents ``predicted [J]``: ``state [B, S]``,
        ``acts [..., B, J, N*A]`` -> ``[..., B, J, out]``."""
        w_state, w_id, w_act, bias = self._first()
        base = (state @ w_state[agent] + bias[agent])[:, None] + w_id[agent, predicted]  # [B, J, h]
        h = (acts @ w_act[agent]).add_(base)
        lead = h.shape[:-1]
        x = h.reshape(-1, h.shape[-1])
        in_place = not torch.is_grad_enabled()  # the KL estimate runs without gradients
        for layer in list(self.net.net)[1:]:
            if isinstance(layer, AgentLinear):
                x = torch.addmm(layer.bias[agent], x, layer.weight[agent])
            else:
                x = x.relu_() if in_place and isinstance(layer, nn.ReLU) else layer(x)
        return x.reshape(*lead, x.shape[-1])


def _shrink_last_layer(module: nn.Module) -> None:
    last = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.uniform_(last.weight, -LAST_LAYER_INIT, LAST_LAYER_INIT)
    nn.init.zeros_(last.bias)


@register
class AlberDICE(Algorithm):
    name = "alberdice"
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
        self.action_enc = spec.n_actions if spec.discrete else spec.action_dim
        out = spec.n_actions if spec.discrete else 2 * spec.action_dim

        # Behaviour models: pi^D_i(a_i | o_i) (shared, with id) and pi^D(a_j | s, a_i, a_{<j}).
        self.behaviour = AgentMLP(n, spec.obs_dim, out, hidden, agent_id=True, shared=True)
        self.ar_behaviour = _AutoregressiveBehaviour(n, spec.state_dim, self.action_enc, out, hidden)
        # cond[i, j, k] = 1 when agent k's action is an input of pi^D(a_j | s, a_i, a_{<j}).
        idx = torch.arange(n)
        i, j, k = idx[:, None, None], idx[None, :, None], idx[None, None, :]
        cond = ((k == i) | ((k < j) & (k != i))) & (j != i)
        self.cond = cond.float().to(device)

        # Per-agent nu_i(s), e_i(s, .) and decentralised pi_i(a_i | o_i).
        self.nus = nn.ModuleList(_Nu(spec.state_dim, hidden) for _ in range(n))
        if spec.discrete:
            self.es = nn.ModuleList(mlp(spec.state_dim, spec.n_actions, hidden) for _ in range(n))
            self.policies = nn.ModuleList(
                CategoricalPolicy(1, spec.obs_dim, spec.n_actions, hidden, agent_id=False) for _ in range(n)
            )
        else:
            self.es = nn.ModuleList(mlp(spec.state_dim + spec.action_dim, 1, hidden) for _ in range(n))
            self.policies = nn.ModuleList(
                TanhGaussianPolicy.for_spec(spec, hidden, single_agent=True) for _ in range(n)
            )
        for policy in self.policies:
            _shrink_last_layer(policy)
        for module in (self.behaviour, self.ar_behaviour, self.nus, self.es, self.policies):
            module.to(device)
        # One optimiser per role: the alternating step gives gradients to agent i's networks
        # only, and Adam skips parameters whose .grad is None, so the others stay untouched.
        self.behaviour_optimizer = torch.optim.Adam(
            [*self.behaviour.parameters(), *self.ar_behaviour.parameters()], lr=config.behaviour_lr, fused=True
        )
        self.nu_optimizer = torch.optim.Adam(self.nus.parameters(), lr=config.nu_lr, fused=True)
        self.e_optimizer = torch.optim.Adam(self.es.parameters(), lr=config.e_lr, fused=True)
        self.policy_optimizer = torch.optim.Adam(self.policies.parameters(), lr=config.policy_lr, fused=True)

    # ------------------------------------------------------------------ helpers
    def _encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as network inputs: one-hot ``[..., N, nA]`` or the raw ``[..., N, A]``."""
        if self.spec.discrete:
            return F.one_hot(actions, self.spec.n_actions).float()
        return actions.float()

    def _gaussian(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def _masked_joint_actions(enc: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``enc [..., N_k, A]`` and ``cond [..., N_j, N_k]`` -> each predicted agent's inputs ``[..., N_j, N_k*A]``."""
        return (cond.unsqueeze(-1) * enc.unsqueeze(-3)).flatten(-2)

    def _ar_log_prob_data(self, batch: Batch, enc: torch.Tensor) -> torch.Tensor:
        """Teacher-forced ``log pi^D(a_j | s, a_i, a_{<j})`` of the dataset actions, ``[B, N_i, N_j]``."""
        out = self.ar_behaviour(batch.state, self._masked_joint_actions(enc[:, None], self.cond))
        if self.spec.discrete:
            avail = None if batch.avail is None else batch.avail[:, None]
            logp = torch.log_softmax(_mask(out, avail), -1)
            index = batch.actions[:, None, :, None].expand(-1, self.n_agents, -1, 1)
            return logp.gather(-1, index).squeeze(-1)
        mean, log_std = self._gaussian(out)
        return gaussian_log_prob(mean, log_std, batch.actions[:, None].float())

    def _behaviour_dist(self, obs: torch.Tensor, avail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Marginal ``pi^D_i(.|o_i)``: log-probs ``[B, N, nA]`` (twice) or ``(mean, log_std)``."""
        out = self.behaviour(obs)
        if self.spec.discrete:
            logp = torch.log_softmax(_mask(out, avail), -1)
            return logp, logp
        return self._gaussian(out)

    def _policy_stats(self, agent: int, obs: torch.Tensor, avail: torch.Tensor | None, actions: torch.Tensor):
        """Agent j's ``(log-probs [B, nA], log pi_j(a_j^D))`` or ``((mean, log_std), log pi_j(a_j^D))``."""
        policy = self.policies[agent]
        o = obs[:, agent : agent + 1]
        if self.spec.discrete:
            a = None if avail is None else avail[:, agent : agent + 1]
            logp = torch.log_softmax(_mask(policy.net(o), a), -1)[:, 0]
            return logp, logp.gather(-1, actions[:, agent, None]).squeeze(-1)
        mean, log_std = policy(o)
        return (mean[:, 0], log_std[:, 0]), policy.log_prob(o, actions[:, agent : agent + 1])[:, 0]

    # ------------------------------------------------------------------ updates
    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        if step <= self.config.pretrain_steps:
            return self._behaviour_update(batch)
        return self._alternating_update(batch, step)

    def _behaviour_update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Behaviour cloning of ``pi^D_i(a_i|o_i)`` and teacher-forced BC of the autoregressive ``pi^D``."""
        if self.spec.discrete:
            logp = self._behaviour_dist(batch.obs, batch.avail)[0]
            marginal = logp.gather(-1, batch.actions[..., None]).squeeze(-1)
        else:
            mean, log_std = self._behaviour_dist(batch.obs, None)
            marginal = gaussian_log_prob(mean, log_std, batch.actions.float())
        ar = self._ar_log_prob_data(batch, self._encode(batch.actions))
        off_diagonal = 1.0 - torch.eye(self.n_agents, device=ar.device)
        ar_loss = -(ar * off_diagonal).sum((-2, -1)).mean() / max(self.n_agents * (self.n_agents - 1), 1)
        marginal_loss = -marginal.mean()
        loss = marginal_loss + ar_loss
        self.behaviour_optimizer.zero_grad()
        loss.backward()
        self.behaviour_optimizer.step()
        return {"behaviour_loss": marginal_loss.detach(), "ar_behaviour_loss": ar_loss.detach()}

    def _other_agents_kl(
        self, agent: int, state: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None, stats: list
    ) -> torch.Tensor:
        """``KL(pi_{-i}(.|s) || pi^D(.|s, a_i))`` for the rows' own ``a_i`` (e), ``[B]``.

        ``a_{-i}`` is drawn from the current policies (``kl_samples`` draws); the discrete case
        sums each factor's exact KL given the sampled prefix, the continuous case the log ratio.
        """
        n = self.n_agents
        # Discrete, two agents: the one factor has no sampled prefix, so one draw gives the exact KL.
        k = 1 if self.spec.discrete and n <= 2 else self.config.kl_samples
        own = torch.arange(n, device=state.device) == agent
        others = torch.nonzero(~own).squeeze(-1)
        if self.spec.discrete:
            logp = torch.stack([stats[j][0] for j in range(n)], 1)  # [B, N, nA]
            flat = logp.exp().reshape(-1, logp.shape[-1])
            sampled = torch.multinomial(flat, k, replacement=True).reshape(*logp.shape[:2], k).permute(2, 0, 1)
            sampled = torch.where(own, actions, sampled)  # [K, B, N]; agent i keeps its dataset action
            enc = self._encode(sampled)
        else:
            mean = torch.stack([stats[j][0][0] for j in range(n)], 1)  # [B, N, A]
            log_std = torch.stack([stats[j][0][1] for j in range(n)], 1)
            u = mean + log_std.exp() * torch.randn((k, *mean.shape), device=mean.device)
            policy = self.policies[0]
            sampled = policy.loc + policy.scale * torch.tanh(u)
            logp_sampled = policy._log_prob_pre_tanh(mean, log_std, u)  # [K, B, N]
            enc = torch.where(own[:, None], actions.float(), sampled)
        acts = self._masked_joint_actions(enc, self.cond[agent, others])  # [K, B, N-1, N*A]
        out = self.ar_behaviour.forward_agent(state, acts, agent, others)
        if self.spec.discrete:
            other_avail = None if avail is None else avail[:, others]
            logq = torch.log_softmax(_mask(out, other_avail), -1)
            kl = categorical_kl(logp[:, others], logq, other_avail)  # [K, B, N-1]
        else:
            mean_d, log_std_d = self._gaussian(out)
            kl = logp_sampled[..., others] - gaussian_log_prob(mean_d, log_std_d, enc[..., others, :])
        return kl.sum(-1).mean(0)

    def _alternating_update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg, n = self.config, self.n_agents
        alpha, gamma = annealed_alpha(step, cfg), cfg.gamma
        batch_size = batch.reward.shape[0]
        with torch.no_grad():
            ar_logp = self._ar_log_prob_data(batch, self._encode(batch.actions))  # [B, N_i, N_j]
            behaviour = self._behaviour_dist(batch.obs, batch.avail)
            stats = [self._policy_stats(j, batch.obs, batch.avail, batch.actions) for j in range(n)]
        n_terminal = batch.terminal.sum()
        logs: dict[str, list[torch.Tensor]] = {k: [] for k in ("nu_loss", "e_loss", "policy_loss", "kl", "ratio")}
        for i in range(n):
            # (ratio) and resampling: transitions drawn in proportion to rho_i under the current pi_{-i}.
            with torch.no_grad():
                policy_logp = torch.stack([s[1] for s in stats], -1)  # [B, N]
                log_ratio = clipped_log_ratio(policy_logp, ar_logp[:, i], i, cfg.ratio_max)
                log_mean_ratio = torch.logsumexp(log_ratio, 0) - math.log(batch_size)
                idx = resample(log_ratio)
                avail = None if batch.avail is None else batch.avail[idx]
                state, actions = batch.state[idx], batch.actions[idx]
                resampled_stats = [
                    ((s[0][0][idx], s[0][1][idx]) if isinstance(s[0], tuple) else s[0][idx], s[1][idx]) for s in stats
                ]
                kl = self._other_agents_kl(i, state, actions, avail, resampled_stats)

            # (nu) for nu_i. A terminal transition's successor is the absorbing state.
            nu = self.nus[i]
            nu_next, nu_now, nu_initial = nu(torch.cat([batch.next_state[idx], state, batch.initial_state])).split(
                [batch_size, batch_size, batch.initial_state.shape[0]]
            )
            next_value = torch.where(batch.terminal[idx] > 0, nu.absorbing, nu_next)
            e_hat = batch.reward[idx] - alpha * kl + gamma * next_value - nu_now
            loss_nu = nu_loss(e_hat, log_mean_ratio, nu_initial, nu.absorbing, n_terminal, alpha, gamma)
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
            obs_i = batch.obs[idx, i : i + 1]
            if self.spec.discrete:
                e_all = e_net(state)
                behaviour_logp = behaviour[0][idx, i]
                agent_avail = None if avail is None else avail[:, i]
                loss_e = e_loss_discrete(
                    e_all, actions[:, i], target, behaviour_logp.exp(), agent_avail, cfg.e_conservative
                )
                logits = _mask(policy.net(obs_i)[:, 0], None if avail is None else avail[:, i])
                loss_pi = i_projection_loss_discrete(
                    torch.log_softmax(logits, -1), e_all.detach(), behaviour_logp, agent_avail, alpha
                )
            else:
                loss_e = self._e_loss_continuous(e_net, state, actions[:, i], target)
                sampled, logp = policy.sample(obs_i)
                mean_d, log_std_d = behaviour[0][idx, i], behaviour[1][idx, i]
                e_net.requires_grad_(False)  # the policy's gradient passes through e_i to the action only
                e_sampled = e_net(torch.cat([state, sampled[:, 0]], -1)).squeeze(-1)
                e_net.requires_grad_(True)
                kl_own = logp[:, 0] - gaussian_log_prob(mean_d, log_std_d, sampled[:, 0])
                loss_pi = -(e_sampled - alpha * kl_own).mean()

            # The three losses touch disjoint parameters (targets detached): one backward pass,
            # then a step of each optimiser; only agent i's networks hold gradients.
            for optimizer in (self.nu_optimizer, self.e_optimizer, self.policy_optimizer):
                optimizer.zero_grad()
            (loss_nu + loss_e + loss_pi).backward()
            for optimizer in (self.nu_optimizer, self.e_optimizer, self.policy_optimizer):
                optimizer.step()

            with torch.no_grad():
                stats[i] = self._policy_stats(i, batch.obs, batch.avail, batch.actions)
            for key, tensor in (
                ("nu_loss", loss_nu),
                ("e_loss", loss_e),
                ("policy_loss", loss_pi),
                ("kl", kl.mean()),
                ("ratio", log_mean_ratio.exp()),
            ):
                logs[key].append(tensor.detach())
        result = {key: torch.stack(values).mean() for key, values in logs.items()}
        result["alpha"] = torch.tensor(alpha)
        return result

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
    def phase_starts(self) -> dict[str, int]:
        return {"behaviour_pretraining": 1, "best_responses": self.config.pretrain_steps + 1}

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        actions = []
        for j, policy in enumerate(self.policies):
            o = obs[..., j : j + 1, :]
            if self.spec.discrete:
                actions.append(policy.act(o, None if avail is None else avail[..., j : j + 1, :], deterministic))
            else:
                actions.append(policy.act(o, deterministic))
        return torch.cat(actions, dim=-2 if not self.spec.discrete else -1)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        if not self.spec.discrete:
            return super().action_probs(obs, avail)
        return torch.cat(
            [
                policy.probs(obs[..., j : j + 1, :], None if avail is None else avail[..., j : j + 1, :])
                for j, policy in enumerate(self.policies)
            ],
            dim=-2,
        )

"""OMIGA: offline multi-agent RL with implicit global-to-local value regularization.

Wang, Xu, Zheng, Zhan, NeurIPS 2023 (paper: /work/shared/papers/omiga.md; official code
ZhengYinan-AIR/OMIGA, facts in REFERENCE.md, "Reference implementations").

A reverse-KL behaviour regulariser on the *global* policy, with Q_tot and V_tot decomposed
by the same non-negative weights (Eq. 8)

    Q_tot(o, a) = sum_i w_i(s) Q_i(o_i, a_i) + b(s),    V_tot(o) = sum_i w_i(s) V_i(o_i) + b(s),

turns into implicit *local* regularisers; three in-sample regressions, one per update:

- Eq. 12, local state values:
  ``min_V E_D[ exp(w_i (Q_i - V_i) / alpha) + w_i V_i / alpha ]`` (its minimiser satisfies the
  self-normalisation Eq. 10, so V_i is a soft maximum of Q_i over the behaviour policy);
- Eq. 13, local Q-values and the mixer:
  ``min_{Q, w, b} E_D[ (r + gamma V_tot(o') - Q_tot(o, a))^2 ]``;
- Eq. 14, local policies (KL projection onto pi_i* of Eq. 9, as in AWR):
  ``max_pi E_D[ exp(w_i (Q_i - V_i) / alpha) log pi_i(a_i | o_i) ]``.

Discrete actions: Q_i is a head over the actions, gathered at a_i; pi_i is a masked
categorical (unavailable actions get probability 0). Continuous actions: Q_i takes
[o_i, a_i]; pi_i is a tanh-Gaussian. ``act`` is the argmax / tanh(mean) when deterministic.

Settings taken from the paper: alpha 10, except HalfCheetah medium (alpha 1), 6h_vs_8z poor
(alpha 2) and 2c_vs_64zg (all learning rates 1e-4) (Appendix C.3, in ``dataset_overrides``;
the SMAC entries match any suite that names its tasks by SMAC map); Adam, learning rate 5e-4
for Q (with the mixer), V and pi; tau 0.005; batch 128; gamma 0.99; 256-256 ReLU MLPs for
Q_i, V_i, pi_i and a 64-unit mixer (Appendix C.1, Tables 5-6).

Where the paper is silent we use the reference code's setting (REFERENCE.md):

- one network per role shared by all agents with a one-hot agent id; mixer ``w = |W h|``,
  ``b`` linear, ``h = relu(W_1 s)`` on the global state (``marlbench.nets.LinearMixer``);
- target networks: Algorithm 1 names a target Q-bar_i but not where it is used. As in the
  reference, Eq. 12 and Eq. 14 use Q-bar_i and the target mixer's w-bar_i, and the bootstrap
  V_tot(o') of Eq. 13 uses target copies of V and of the mixer, which Algorithm 1 does not
  list (``(1 - terminal)`` masks the bootstrap); all targets are Polyak-averaged with tau
  after every step;
- the exponent ``z_i = w-bar_i (Q-bar_i - V_i) / alpha`` of Eq. 12 is evaluated as
  ``exp(z - m) + exp(-m) w-bar V / alpha`` with ``m = max(max z, -1)`` (a detached
  constant): a rescaling of Eq. 12 that cannot overflow and keeps its minimiser;
- the policy weight of Eq. 14 is ``exp(clip(z, -10, 10))`` (``weight_clip``);
- gradient norm clipping at 1.0, separately for the Q+mixer, V and pi parameters;
- tanh-Gaussian clamps: pre-tanh mean to [-9, 9], log std to [-5, 2].

Departures from the reference code (its bugs are not reproduced):

- the reference hard-codes alpha = 10 and so never applies the paper's per-dataset alpha;
- the reference clamps z to [-10, 10] *inside* the V objective too. Where z > 10 that drops
  the exponential term's gradient and leaves only the linear term, which pushes V_i further
  down (the wrong way); here Eq. 12 is used unclamped (the max-shift already prevents
  overflow) and the clip applies to the policy weight only;
- the reference is continuous-only; the discrete variant follows the same equations.

Implementation: the three losses touch disjoint parameters (targets and weights are
detached), so the core back-propagates their sum once and one fused Adam with three
parameter groups (one per learning rate) takes the step; that equals the reference's three
optimisers with per-network clipping. The networks' layers are called functionally (each
input with its agent ids built once and shared by Q and Q-bar, or V and pi), the target
mixer runs once on [s; s'], and nothing reads a value back to the host.

On penalty XOR a linear decomposition fits Q_i(B) - Q_i(A) = +1 on {AA, AB, BA} and -1 on
all four joint actions, and with alpha = 10 the policy stays close to the behaviour:
pi_i(B) = mu_i(B) e^{+-0.1} / Z, so the expected returns are about 0, 0.21 and 0.05 on
{AB, BA}, {AA, AB, BA} and all four (InSPO Table 1 reports 0.00, 0.21, 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marlbench.algorithm import Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Batch
from marlbench.nets import AgentMLP, LinearMixer, policy_for_spec
from marlbench.nets.hotpath import flat_mlp, with_agent_ids
from marlbench.nets.targets import frozen_copy
from marlbench.spec import EnvSpec
from marlbench.step import ParamGroup, TargetNet


@dataclass
class OMIGAConfig(AlgorithmConfig):
    batch_size: int = 128  # transitions per update (Table 5)
    alpha: float = 10.0  # regularisation strength of Eqs. 12 and 14
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of Q-bar, V-bar and the target mixer
    q_learning_rate: float = 5e-4  # Q_i and the mixer w, b (Eq. 13)
    v_learning_rate: float = 5e-4  # V_i (Eq. 12)
    policy_learning_rate: float = 5e-4  # pi_i (Eq. 14)
    hidden: tuple[int, ...] = (256, 256)  # MLP widths of Q_i, V_i and pi_i
    mixer_hidden: int = 64  # hypernetwork width of the mixer
    shared_parameters: bool = True  # one network per role for all agents (with agent ids)
    grad_clip: float = 1.0  # gradient-norm clip, per parameter group (reference code)
    weight_clip: float = 10.0  # |z| bound inside the policy weight exp(z) of Eq. 14


@register
class OMIGA(Algorithm):
    name = "omiga"
    display_name = "OMIGA"
    column_order = 5
    title = "OMIGA: Offline Multi-Agent RL with Implicit Global-to-Local Value Regularization (Wang et al., 2023)"
    Config = OMIGAConfig
    dataset_overrides = {
        "mamujoco/halfcheetah/medium": {"alpha": 1.0},
        "*/6h_vs_8z/poor": {"alpha": 2.0},
        "*/2c_vs_64zg/*": {"q_learning_rate": 1e-4, "v_learning_rate": 1e-4, "policy_learning_rate": 1e-4},
    }
    loss_groups = {"q_loss": ("q",), "v_loss": ("v",), "policy_loss": ("policy",)}

    def __init__(self, spec: EnvSpec, config: OMIGAConfig, device: torch.device):
        super().__init__(spec, config, device)
        n, hidden, shared = spec.n_agents, config.hidden, config.shared_parameters
        q_in, q_out = (spec.obs_dim, spec.n_actions) if spec.discrete else (spec.obs_dim + spec.action_dim, 1)
        self.q_net = AgentMLP(n, q_in, q_out, hidden, shared=shared).to(device)
        self.policy = policy_for_spec(spec, hidden, shared=shared).to(device)
        self.v_net = AgentMLP(n, spec.obs_dim, 1, hidden, shared=shared).to(device)
        self.mixer = LinearMixer(n, spec.state_dim, config.mixer_hidden).to(device)
        self.q_target = frozen_copy(self.q_net)
        self.v_target = frozen_copy(self.v_net)
        self.mixer_target = frozen_copy(self.mixer)
        self._eye = torch.eye(spec.n_agents, device=device)

    def param_groups(self) -> list[ParamGroup]:
        # A group per learning rate of Table 5; Adam is per-parameter, so one fused Adam over
        # them equals the reference's three optimisers.
        cfg = self.config
        return [
            ParamGroup("q", [self.q_net, self.mixer], cfg.q_learning_rate, cfg.grad_clip),
            ParamGroup("v", [self.v_net], cfg.v_learning_rate, cfg.grad_clip),
            ParamGroup("policy", [self.policy], cfg.policy_learning_rate, cfg.grad_clip),
        ]

    def targets(self) -> list[TargetNet]:
        # Polyak averaging of Q-bar, V-bar and the target mixer (Algorithm 1, line 9).
        tau = self.config.tau
        return [
            TargetNet(self.q_net, self.q_target, tau),
            TargetNet(self.v_net, self.v_target, tau),
            TargetNet(self.mixer, self.mixer_target, tau),
        ]

    def _q_taken(self, net: AgentMLP, q_input: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(o_i, a_i) of the dataset actions, ``[B, N]``."""
        out = flat_mlp(net, q_input)
        if self.spec.discrete:
            return out.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return out.squeeze(-1)

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs_input = with_agent_ids(self._eye, batch.obs)  # V_i, pi_i (and Q_i on discrete tasks)
        q_input = obs_input if self.spec.discrete else with_agent_ids(self._eye, batch.obs, batch.actions)
        n_rows = batch.state.shape[0]
        with torch.no_grad():
            # Target mixer on s (w-bar for Eq. 12/14) and s' (V_tot(o') for Eq. 13) in one pass.
            w_bar_both, b_bar_both = self.mixer_target.parts(torch.cat([batch.state, batch.next_state]))
            w_bar, w_bar_next, b_bar_next = w_bar_both[:n_rows], w_bar_both[n_rows:], b_bar_both[n_rows:]
            q_bar = self._q_taken(self.q_target, q_input, batch.actions)
            # Eq. 8 for V_tot(o') with the target V and mixer; the bootstrap of Eq. 13.
            v_next = flat_mlp(self.v_target, with_agent_ids(self._eye, batch.next_obs)).squeeze(-1)
            v_tot_next = (w_bar_next * v_next).sum(-1) + b_bar_next
            td_target = batch.reward + cfg.gamma * (1.0 - batch.terminal) * v_tot_next

        # Eq. 13: TD regression of Q_tot = sum_i w_i Q_i + b (Eq. 8) on r + gamma V_tot(o').
        w, b = self.mixer.parts(batch.state)
        q_tot = (w * self._q_taken(self.q_net, q_input, batch.actions)).sum(-1) + b
        q_loss = (q_tot - td_target).square().mean()

        # Eq. 12: min_V E[exp(z) + w V / alpha] with z = w (Q - V) / alpha, as
        # exp(z - m) + exp(-m) w V / alpha (m a detached constant: same minimiser, no overflow).
        v = flat_mlp(self.v_net, obs_input).squeeze(-1)
        w_bar_alpha = w_bar / cfg.alpha
        z = w_bar_alpha * (q_bar - v)
        shift = z.detach().max().clamp(min=-1.0)
        v_loss = (torch.exp(z - shift) + torch.exp(-shift) * w_bar_alpha * v).mean()

        # Eq. 14: max_pi E[exp(z) log pi(a|o)], the weight detached and z clipped.
        weight = torch.exp(z.detach().clamp(-cfg.weight_clip, cfg.weight_clip))
        log_prob = self.policy.log_prob_of_output(flat_mlp(self.policy.net, obs_input), batch.actions, batch.avail)
        policy_loss = -(weight * log_prob).mean()

        return {
            "q_loss": q_loss,
            "v_loss": v_loss,
            "policy_loss": policy_loss,
            "q_tot": q_tot,
            "v": v,
            "policy_weight": weight,
        }

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, avail, deterministic)

    def action_probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return self.policy.probs(obs, avail)

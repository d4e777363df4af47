"""What the per-agent sequential methods (AlberDICE, InSPO) share: each agent's own policy, the
autoregressive behaviour model, and the availability mask of their training hot paths."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.nets.mlp import AgentLinear
from marlbench.nets.policies import CategoricalPolicy, TanhGaussianPolicy
from marlbench.spec import EnvSpec


def mask_unavailable(logits: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """Unavailable actions get ``finfo.min``: ``masked_logits`` without its host-side check, so no
    sync on the training hot path (the dataset's rows always hold an available action)."""
    return logits if avail is None else logits.masked_fill(~avail, torch.finfo(logits.dtype).min)


def masked_log_softmax(logits: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """Log-probabilities over the last dim, unavailable actions at probability 0 (:func:`mask_unavailable`)."""
    return torch.log_softmax(mask_unavailable(logits, avail), dim=-1)


def _own(x: torch.Tensor | None, agent: int) -> torch.Tensor | None:
    return None if x is None else x[..., agent : agent + 1, :]


class AgentPolicies(nn.ModuleList):
    """One policy per agent with parameters of its own, on its agent's own observation (no id), so
    that a sequential update of agent i moves agent i alone: masked categorical or tanh-Gaussian
    per ``spec``. ``obs [..., N, O]``, ``avail [..., N, nA]`` or None, actions ``[B, N(, A)]``."""

    def __init__(self, spec: EnvSpec, hidden: tuple[int, ...]):
        super().__init__(
            CategoricalPolicy(1, spec.obs_dim, spec.n_actions, hidden, agent_id=False)
            if spec.discrete
            else TanhGaussianPolicy.for_spec(spec, hidden, single_agent=True)
            for _ in range(spec.n_agents)
        )

    def output(self, agent: int, obs: torch.Tensor) -> torch.Tensor:
        """Agent ``agent``'s raw network output ``[..., out]``, for its policy's ``log_prob_of_output`` etc."""
        return self[agent].net(obs[..., agent : agent + 1, :])[..., 0, :]

    def log_prob(self, obs: torch.Tensor, avail: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
        """Every agent's ``log pi_i(a_i | o_i)``, ``[B, N]``."""
        avails = [None] * len(self) if avail is None else avail.unbind(1)
        log_probs = [p.log_prob_of_output(self.output(i, obs), actions[:, i], avails[i]) for i, p in enumerate(self)]
        return torch.stack(log_probs, dim=-1)

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, deterministic: bool) -> torch.Tensor:
        actions = [policy.act(obs[..., i : i + 1, :], _own(avail, i), deterministic) for i, policy in enumerate(self)]
        return torch.cat(actions, dim=obs.dim() - 2)  # the agent dim: last of [..., N], second last of [..., N, A]

    def probs(self, obs: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([policy.probs(obs[..., i : i + 1, :], _own(avail, i)) for i, policy in enumerate(self)], -2)


class AutoregressiveBehaviour(nn.Module):
    """The data's joint behaviour factored after each conditioning agent i, ``p(a_j | s, a_i, a_{<j})``
    for every predicted agent j != i (AlberDICE's ``pi^D``, InSPO's Eq. 22 ``mu^{-i}``): one MLP per i
    on ``[s, onehot(j), masked joint action]``, where the masked joint action keeps ``a_i`` and the
    actions of the agents before j (other than i) and zeros the rest. Discrete actions (int64) enter
    one-hot, continuous ones as they are; ``out_dim`` is the caller's (logits, or Gaussian parameters).

    The first layer is applied in parts (state, id, actions), so the state's share is computed once
    per row and conditioning agent rather than once per predicted agent (and sample).
    """

    def __init__(self, n_agents: int, state_dim: int, action_width: int, out_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        width = hidden[0]
        self.action_width = action_width
        self.state_weight = nn.Parameter(torch.empty(n_agents, state_dim, width))
        self.id_weight = nn.Parameter(torch.empty(n_agents, n_agents, width))
        self.action_weight = nn.Parameter(torch.empty(n_agents, n_agents * action_width, width))
        self.first_bias = nn.Parameter(torch.empty(n_agents, width))
        bound = 1.0 / math.sqrt(state_dim + n_agents + n_agents * action_width)  # nn.Linear's init
        for parameter in (self.state_weight, self.id_weight, self.action_weight, self.first_bias):
            nn.init.uniform_(parameter, -bound, bound)
        layers: list[nn.Module] = []
        for h in hidden[1:]:
            layers += [nn.ReLU(), AgentLinear(n_agents, width, h)]
            width = h
        layers += [nn.ReLU(), AgentLinear(n_agents, width, out_dim)]
        self.rest = nn.Sequential(*layers)
        # inputs[i, j, k] = 1 when agent k's action conditions p(a_j | ...) for agent i: k = i, or k < j and k != i.
        index = torch.arange(n_agents)
        i, j, k = index[:, None, None], index[None, :, None], index[None, None, :]
        self.register_buffer("inputs", (((k == i) | ((k < j) & (k != i))) & (j != i)).float(), persistent=False)
        # others[i]: the predicted agents j != i in index order.
        others = index.expand(n_agents, n_agents)[index[:, None] != index]
        self.register_buffer("others", others.view(n_agents, n_agents - 1), persistent=False)

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Joint actions as inputs: one-hot ``[..., N, nA]`` for int64 ``[..., N]``, else as given ``[..., N, A]``."""
        return actions.float() if actions.is_floating_point() else F.one_hot(actions, self.action_width).float()

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Teacher forcing on the dataset's joint actions: ``state [B, S]`` -> ``[B, N_i, N_j, out]``."""
        masked = (self.inputs[..., None] * self.encode(actions)[:, None, None]).flatten(-2)  # [B, Ni, Nj, N*A]
        hidden = (
            torch.einsum("bs,ish->bih", state, self.state_weight)[:, :, None]
            + self.id_weight[None]
            + torch.einsum("bijk,ikh->bijh", masked, self.action_weight)
            + self.first_bias[None, :, None]
        )
        return self.rest(hidden.transpose(1, 2)).transpose(1, 2)  # AgentLinear acts on dim -2 (agent i)

    def conditional(self, state: torch.Tensor, actions: torch.Tensor, agent: int) -> torch.Tensor:
        """Conditioning agent ``agent`` alone on joint actions ``[..., B, N(, A)]`` (its own and, say,
        sampled ones of the others): ``state [B, S]`` -> ``[..., B, N - 1, out]`` for the agents ``others[agent]``."""
        others = self.others[agent]
        masked = (self.inputs[agent, others][..., None] * self.encode(actions)[..., None, :, :]).flatten(-2)
        base = (state @ self.state_weight[agent] + self.first_bias[agent])[:, None] + self.id_weight[agent, others]
        x = (masked @ self.action_weight[agent]).add_(base)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        for layer in self.rest:
            x = torch.addmm(layer.bias[agent], x, layer.weight[agent]) if isinstance(layer, AgentLinear) else x.relu_()
        return x.reshape(*lead, x.shape[-1])

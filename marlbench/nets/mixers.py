"""Monotonic mixers for value decomposition: ``values [B, N]``, ``state [B, S]`` -> ``[B]``.

Monotonicity (``d out / d values_i >= 0``) comes from non-negative state-conditioned
weights (absolute value of a hypernetwork output) and monotone activations.
Leading dims other than B also work: ``[..., N]``, ``[..., S]`` -> ``[...]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from marlbench.nets.mlp import mlp


class Mixing:
    """A mixer's hypernetwork outputs at a batch of states, applicable to several value
    vectors at those states (``M_s[x]``, ``M_s[y]``, ...) for the price of one hypernetwork pass."""

    def __init__(self, combine: Callable[..., torch.Tensor], *hyper: torch.Tensor):
        self.combine = combine
        self.hyper = hyper

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return self.combine(values, *self.hyper)

    def detach(self) -> Mixing:
        """The same mixing with the mixer's parameters held fixed (no gradient to them)."""
        return Mixing(self.combine, *(h.detach() for h in self.hyper))


def _linear_mix(values: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (w * values).sum(dim=-1) + b


def _qmix_mix(
    values: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    hidden = F.elu(torch.einsum("...n,...ne->...e", values, w1) + b1)
    return (hidden * w2).sum(dim=-1) + v


class LinearMixer(nn.Module):
    """``Q_tot = sum_i w_i(s) Q_i + b(s)`` with ``w(s) = |W_w relu(W_1 s)| >= 0``.

    The mixer of OMIGA (ZhengYinan-AIR/OMIGA, ``MixNet``) and ComaDICE (vietbt/ComaDICE,
    ``MixNet``, 64 hidden units): one ReLU hidden layer on the state feeds both the
    weight head and the bias head.
    """

    def __init__(self, n_agents: int, state_dim: int, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU())
        self.weight_head = nn.Linear(hidden, n_agents)
        self.bias_head = nn.Linear(hidden, 1)

    def parts(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w(s) [B, N], b(s) [B])``: the non-negative weights and the bias, one body pass."""
        h = self.body(state)
        return self.weight_head(h).abs(), self.bias_head(h).squeeze(-1)

    def weights(self, state: torch.Tensor) -> torch.Tensor:
        """Non-negative per-agent weights ``[B, N]``."""
        return self.parts(state)[0]

    def bias(self, state: torch.Tensor) -> torch.Tensor:
        """State-dependent bias ``[B]``."""
        return self.parts(state)[1]

    def mixing(self, state: torch.Tensor) -> Mixing:
        return Mixing(_linear_mix, *self.parts(state))

    def forward(self, values: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.mixing(state)(values)

    def non_negative_weights(self, state: torch.Tensor) -> list[torch.Tensor]:
        return [self.weights(state)]


class TwoLayerMixer(nn.Module):
    """QMIX mixing network (Rashid et al. 2018; pymarl ``QMixer`` with two-layer hypernetworks).

    ``hidden = elu(values W1(s) + b1(s))``, ``out = hidden . w2(s) + V(s)`` with
    ``W1 = |hyper_w1(s)| [B, N, E]`` and ``w2 = |hyper_w2(s)| [B, E]``.
    """

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_hidden: int = 64):
        super().__init__()
        self.n_agents = n_agents
        self.embed_dim = embed_dim
        self.hyper_w1 = mlp(state_dim, n_agents * embed_dim, (hypernet_hidden,))
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = mlp(state_dim, embed_dim, (hypernet_hidden,))
        # pymarl's V(s): Linear(S, embed_dim) -> ReLU -> Linear(embed_dim, 1).
        self.value = mlp(state_dim, 1, (embed_dim,))

    def _w1(self, state: torch.Tensor) -> torch.Tensor:
        return self.hyper_w1(state).abs().unflatten(-1, (self.n_agents, self.embed_dim))

    def _w2(self, state: torch.Tensor) -> torch.Tensor:
        return self.hyper_w2(state).abs()

    def mixing(self, state: torch.Tensor) -> Mixing:
        return Mixing(_qmix_mix, self._w1(state), self.hyper_b1(state), self._w2(state), self.value(state).squeeze(-1))

    def forward(self, values: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.mixing(state)(values)

    def non_negative_weights(self, state: torch.Tensor) -> list[torch.Tensor]:
        return [self._w1(state), self._w2(state)]


MIXERS: dict[str, type[nn.Module]] = {"linear": LinearMixer, "two-layer": TwoLayerMixer}


def make_mixer(kind: str, n_agents: int, state_dim: int, **kwargs: int) -> nn.Module:
    """Build a mixer by name; ``kwargs`` go to its constructor (e.g. ``hidden``, ``embed_dim``)."""
    if kind not in MIXERS:
        raise ValueError(f"unknown mixer '{kind}'; choose one of {', '.join(sorted(MIXERS))}")
    return MIXERS[kind](n_agents, state_dim, **kwargs)

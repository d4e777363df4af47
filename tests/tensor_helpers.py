"""Helpers the algorithm tests share for hand-computed losses on tiny tensors."""

from __future__ import annotations

import torch


def set_constant_output(net: torch.nn.Module, values: list[float]) -> None:
    """Zero the last linear layer's weight so the network outputs ``values`` for every input."""
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(values))


def set_constant_mixer(mixer: torch.nn.Module, weights: list[float], bias: float) -> None:
    """A LinearMixer with state-independent weights ``|weights|`` and bias ``bias``."""
    with torch.no_grad():
        mixer.weight_head.weight.zero_()
        mixer.weight_head.bias.copy_(torch.tensor(weights))
        mixer.bias_head.weight.zero_()
        mixer.bias_head.bias.fill_(bias)

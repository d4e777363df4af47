"""Target networks (frozen copies that follow their online networks by Polyak averaging, which
the core does) and networks frozen for the length of one loss."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def frozen_copy(module: ModuleT) -> ModuleT:
    """A deep copy of ``module`` that autograd never trains (a target network)."""
    return copy.deepcopy(module).requires_grad_(False)


@contextmanager
def parameters_frozen(*modules: nn.Module) -> Iterator[None]:
    """Inside, ``modules`` record no gradient for their own parameters (gradients still flow
    through them to their inputs): a loss that reads a critic to train an actor, say."""
    flags = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)

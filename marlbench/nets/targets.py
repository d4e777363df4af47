"""Target networks: frozen copies that follow their online networks by Polyak averaging."""

from __future__ import annotations

import copy
from typing import TypeVar

from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def frozen_copy(module: ModuleT) -> ModuleT:
    """A deep copy of ``module`` that autograd never trains (a target network)."""
    return copy.deepcopy(module).requires_grad_(False)

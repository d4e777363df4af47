"""f-divergences of the DICE family (ComaDICE Appendix B.5).

Each divergence provides the generator ``f``, its derivative's inverse ``(f')^{-1}`` and
its convex conjugate over the non-negative reals, ``f*(y) = sup_{t >= 0} (t y - f(t))``,
whose maximiser is ``w*(y) = max(0, (f')^{-1}(y))`` (Proposition 4.1).

- KL: f(x) = x log x - x + 1, so f'(x) = log x, (f')^{-1}(y) = exp(y), f*(y) = exp(y) - 1.
  Appendix B.5 prints (f')^{-1}(x) = exp(x - 1), which is the inverse for f(x) = x log x
  instead; we keep the printed f and use its true inverse so that w* maximises
  -f(w) + w y (the two choices differ by a constant shift of nu).
- chi^2: f(x) = (x - 1)^2 / 2, (f')^{-1}(y) = y + 1; on t >= 0 the conjugate is
  y^2 / 2 + y for y >= -1 and -1/2 below (where w* = 0).
- soft-chi^2: x log x - x + 1 on (0, 1), (x - 1)^2 / 2 on [1, inf);
  (f')^{-1}(y) = exp(y) for y < 0, y + 1 for y >= 0; f*(y) = exp(y) - 1 for y < 0,
  y^2 / 2 + y for y >= 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

DivergenceName = Literal["soft-chi2", "chi2", "kl"]


def _xlogx(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x * torch.log(x.clamp_min(torch.finfo(x.dtype).tiny)), torch.zeros_like(x))


@dataclass(frozen=True)
class FDivergence:
    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    inverse_derivative: Callable[[torch.Tensor], torch.Tensor]
    conjugate: Callable[[torch.Tensor], torch.Tensor]

    def optimal_ratio(self, y: torch.Tensor) -> torch.Tensor:
        """``w*(y) = max(0, (f')^{-1}(y))``: the maximiser of ``-f(w) + w y`` over w >= 0."""
        return self.inverse_derivative(y).clamp_min(0.0)


def _kl_f(x: torch.Tensor) -> torch.Tensor:
    return _xlogx(x) - x + 1.0


def _chi2_f(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x - 1.0) ** 2


def _chi2_conjugate(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y >= -1.0, 0.5 * y**2 + y, torch.full_like(y, -0.5))


def _soft_chi2_f(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 1.0, _kl_f(x), _chi2_f(x))


def _soft_chi2_inverse_derivative(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y < 0.0, torch.exp(y.clamp_max(0.0)), y + 1.0)


def _soft_chi2_conjugate(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y < 0.0, torch.expm1(y.clamp_max(0.0)), 0.5 * y**2 + y)


DIVERGENCES: dict[str, FDivergence] = {
    "kl": FDivergence("kl", _kl_f, torch.exp, torch.expm1),
    "chi2": FDivergence("chi2", _chi2_f, lambda y: y + 1.0, _chi2_conjugate),
    "soft-chi2": FDivergence("soft-chi2", _soft_chi2_f, _soft_chi2_inverse_derivative, _soft_chi2_conjugate),
}


def get_divergence(name: str) -> FDivergence:
    if name not in DIVERGENCES:
        raise ValueError(f"unknown f-divergence {name!r}; choose one of {sorted(DIVERGENCES)}")
    return DIVERGENCES[name]

"""Welch's two-sided t-test between a table row's best entry and each other entry.

The InSPO paper marks every entry that is not significantly different from the best of its row
(Welch's t-test, 5%); ``welch_test`` is ``scipy.stats.ttest_ind(a, b, equal_var=False)`` with
the two cases where scipy divides zero by zero decided explicitly, so no NaN and no warning
reaches a table:

- both samples have zero variance and equal means: t = 0, p = 1 (indistinguishable);
- both samples have zero variance and different means: t = ±inf, p = 0 (different; with no
  spread at all any gap is certain).

When exactly one sample has zero variance the Welch statistic is well defined (the other
sample's variance keeps the denominator positive) and scipy computes it correctly, but it warns
about "catastrophic cancellation" for the constant sample; that warning is silenced.

A sample of fewer than 2 values has no variance estimate: ``welch_test`` returns None and the
table says the entry was not tested.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SIGNIFICANCE_LEVEL = 0.05


@dataclass(frozen=True)
class WelchResult:
    t: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < SIGNIFICANCE_LEVEL


def welch_test(a: Sequence[float], b: Sequence[float]) -> WelchResult | None:
    """Two-sided Welch t-test of equal means; None when either sample has fewer than 2 values."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    if np.var(a, ddof=1) == 0 and np.var(b, ddof=1) == 0:
        gap = float(a.mean() - b.mean())
        if gap == 0:
            return WelchResult(0.0, 1.0)
        return WelchResult(math.copysign(math.inf, gap), 0.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    return WelchResult(float(result.statistic), float(result.pvalue))

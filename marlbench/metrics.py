"""The metrics a benchmark file may name and a report shows: their descriptions, short names and
units. Standard library only: benchmark files (read by training) and reports (which never import
torch) share it without either pulling in the other's dependencies."""

from __future__ import annotations

METRIC_DESCRIPTIONS = {
    "return_mean": "the mean return of the final evaluation's deterministic episodes",
    "win_rate": "the win rate (in percent) of the final evaluation's deterministic episodes",
    "expected_return": (
        "on one-step discrete games the exact expected return of the stochastic joint policy "
        "(what the papers' matrix tables report), elsewhere the mean return of the final evaluation's "
        "deterministic episodes"
    ),
}
METRIC_NAMES = {"return_mean": "return", "win_rate": "win rate (%)", "expected_return": "expected return"}
PERCENT_METRICS = {"win_rate"}
"""Metrics result files hold as fractions and reports show in percent."""

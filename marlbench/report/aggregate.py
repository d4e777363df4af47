"""An aggregate over instances: the interquartile mean (IQM) and the mean of normalised final
scores per column, with stratified-bootstrap 95% confidence intervals (Agarwal et al. 2021,
"Deep RL at the edge of the statistical precipice"; the ``rliable`` package).

Normalisation: per instance against fixed references, as D4RL's normalised score
``(score - low) / (high - low)``, so a column's score does not depend on the other columns:

- ``win_rate``: the win rate as a fraction (already in [0, 1]; no references needed);
- otherwise the references the dataset card records (``source.reference_returns``, copied into
  every run's config): the random policy's and the behaviour expert's returns (MaMuJoCo; Bridge's
  exact uniform-random and optimal returns), or a matrix game's payoff range (min and max payoff);
- fallback, where no run's card holds references (datasets imported or written before the
  cards recorded them) or the runs' cards disagree: min-max over the columns' mean scores in
  that instance, so the best column's mean is 1 and the worst's 0. Such an instance changes when
  a column is added, and one where every column has the same mean carries no information and is
  left out. The report names the fallback instances and why.

A single run may fall outside [0, 1] under any of these.

Runs: the score matrix of a column is runs x instances, as rliable expects. A column without a
single completed run is left out; an instance enters only when every remaining column has at
least one completed run there; all columns then use the same number of runs R per instance, the
smallest count of completed runs among those cells, taking each cell's R lowest seeds. Diverged
and missing runs therefore never enter as zeros.

The point estimates are ``rliable.metrics.aggregate_iqm`` / ``aggregate_mean``. Departure: the
bootstrap is our own ``stratified_bootstrap_ci`` (percentile intervals, runs resampled with
replacement independently within each instance, the scheme of rliable's
``StratifiedBootstrap``) because ``rliable.library`` imports ``arch``, and arch 7.2 fails to
import with pandas 3 (``deprecate_kwarg()`` signature). Each resample's IQM is
``scipy.stats.trim_mean(·, 0.25)`` of the flattened matrix, the function ``aggregate_iqm``
calls, evaluated for all resamples at once. 2,000 resamples and a fixed seed, so a report is
reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rliable.metrics import aggregate_iqm, aggregate_mean
from scipy import stats

from marlbench.report.results import INSTANCE_KEYS, REFERENCE_COLUMNS
from marlbench.report.tables import PERCENT_METRICS, Column, Instance, score_column

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
WIN_RATE = "win-rate"
COLUMN_RANGE = "column-range"


@dataclass(frozen=True)
class Normalisation:
    """``(score - low) / (high - low)`` on one instance, scores in display units."""

    kind: str
    """``random-expert`` or ``payoff-range`` (the dataset card's references), ``win-rate``, or
    ``column-range`` (the fallback)."""
    low: float
    high: float
    reason: str = ""
    """Why the fallback was needed."""


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass
class Aggregate:
    columns: list[Column]
    instances: list[Instance]
    """The instances that entered."""
    left_out: dict[Instance, str]
    """Instances that did not enter, with the reason."""
    left_out_columns: list[Column]
    """Columns without a single completed run (not implemented, n/a, not run yet)."""
    runs_per_instance: int
    normalisation: dict[Instance, Normalisation]
    """How each instance that entered was normalised."""
    iqm: dict[Column, Estimate]
    mean: dict[Column, Estimate]
    normalised: dict[Column, np.ndarray]
    """Per column the runs x instances matrix of normalised scores."""


def iqm_of_rows(values: np.ndarray) -> np.ndarray:
    """The IQM of each row (rliable's ``aggregate_iqm`` of one flattened score matrix per row)."""
    return stats.trim_mean(values, proportiontocut=0.25, axis=1)


def mean_of_rows(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=1)


ROW_STATISTICS: dict[str, tuple[Callable[[np.ndarray], float], Callable[[np.ndarray], np.ndarray]]] = {
    "iqm": (aggregate_iqm, iqm_of_rows),
    "mean": (aggregate_mean, mean_of_rows),
}


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic_of_rows: Callable[[np.ndarray], np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of a statistic over resamples of a runs x instances matrix, each
    instance's runs drawn with replacement independently of the other instances.
    ``statistic_of_rows`` maps [resamples, runs * instances] to one value per resample."""
    rng = np.random.default_rng(seed)
    runs, instances = scores.shape
    picks = rng.integers(0, runs, size=(resamples, runs, instances))
    resampled = np.take_along_axis(scores[None, :, :], picks, axis=1).reshape(resamples, -1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(statistic_of_rows(resampled), [tail, 100.0 - tail])
    return float(low), float(high)


def _estimate(scores: np.ndarray, name: str, resamples: int, seed: int) -> Estimate:
    point, of_rows = ROW_STATISTICS[name]
    low, high = stratified_bootstrap_ci(scores, of_rows, resamples, seed)
    return Estimate(float(point(scores)), low, high)


def normalisation(metric: str, runs: pd.DataFrame, means: Sequence[float]) -> Normalisation | None:
    """The normalisation of one instance from its completed ``runs`` and the columns' ``means``;
    None when only the fallback applies and every column has the same mean."""
    if metric in PERCENT_METRICS:
        return Normalisation(WIN_RATE, 0.0, 100.0)
    references = runs[REFERENCE_COLUMNS].dropna().drop_duplicates()
    if len(references) == 1:
        kind, low, high = references.iloc[0]
        if high > low:
            return Normalisation(kind, float(low), float(high))
        reason = f"the dataset card's references are not increasing ({low:g}, {high:g})"
    elif len(references) > 1:
        reason = "the runs' dataset cards give different references"
    else:
        reason = "no references on the dataset card"
    low, high = min(means), max(means)
    if np.isclose(low, high):
        return None
    return Normalisation(COLUMN_RANGE, float(low), float(high), reason)


def aggregate_scores(
    runs: pd.DataFrame,
    metric: str,
    columns: Sequence[Column],
    instances: Sequence[Instance],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Aggregate | None:
    """IQM and mean of normalised final scores per column; None when no instance qualifies."""
    completed = runs[runs["status"] == "completed"].assign(score=score_column(runs, metric)).dropna(subset=["score"])
    present = set(zip(completed["algo"], completed["variant"], strict=True))
    left_out_columns = [column for column in columns if (column.algo, column.variant) not in present]
    columns = [column for column in columns if (column.algo, column.variant) in present]
    if not columns:
        return None
    per_cell: dict[tuple[Instance, Column], np.ndarray] = {}
    left_out: dict[Instance, str] = {}
    normalisations: dict[Instance, Normalisation] = {}
    for instance in instances:
        here = completed[(completed[INSTANCE_KEYS] == pd.Series(instance, index=INSTANCE_KEYS)).all(axis=1)]
        cells = {}
        for column in columns:
            chosen = here[(here["algo"] == column.algo) & (here["variant"] == column.variant)].sort_values("seed")
            cells[column] = chosen["score"].to_numpy(dtype=float)
        empty = [column.label for column, scores in cells.items() if len(scores) == 0]
        if empty:
            left_out[instance] = f"no completed run of {', '.join(empty)}"
            continue
        chosen_normalisation = normalisation(metric, here, [scores.mean() for scores in cells.values()])
        if chosen_normalisation is None:
            left_out[instance] = "every column has the same mean"
            continue
        normalisations[instance] = chosen_normalisation
        per_cell.update({(instance, column): scores for column, scores in cells.items()})
    if not normalisations:
        return None
    kept = list(normalisations)
    runs_per_instance = min(len(scores) for scores in per_cell.values())
    normalised: dict[Column, np.ndarray] = {column: np.empty((runs_per_instance, len(kept))) for column in columns}
    for index, instance in enumerate(kept):
        low, high = normalisations[instance].low, normalisations[instance].high
        for column in columns:
            scores = per_cell[(instance, column)][:runs_per_instance]
            normalised[column][:, index] = (scores - low) / (high - low)
    return Aggregate(
        columns=list(columns),
        instances=kept,
        left_out=left_out,
        left_out_columns=left_out_columns,
        runs_per_instance=runs_per_instance,
        normalisation=normalisations,
        iqm={column: _estimate(matrix, "iqm", resamples, seed) for column, matrix in normalised.items()},
        mean={column: _estimate(matrix, "mean", resamples, seed) for column, matrix in normalised.items()},
        normalised=normalised,
    )

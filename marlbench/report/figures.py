"""Figures with matplotlib (Agg backend, PNG files): learning curves per instance, the α-ablation
plot of ComaDICE Figure 1, and the aggregate IQM with its confidence intervals.

- Curves: one panel per instance; per column the mean over seeds of the evaluation score at
  each evaluation step, with the band mean ± std (population, ddof=0) over the seeds that
  reached that step (a diverged run stops contributing at its last evaluation).
- α ablation: per instance the final score's mean ± std over seeds against α on a log axis,
  one line per algorithm (ComaDICE Figure 1 plots win rate/return against α ∈ {0.01 … 100}).
- Aggregate: per column the IQM of normalised scores as a dot with its 95% interval.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from marlbench.data.store import atomic_temp_file  # noqa: E402
from marlbench.report.aggregate import Aggregate  # noqa: E402
from marlbench.report.results import INSTANCE_KEYS  # noqa: E402
from marlbench.report.tables import METRIC_NAMES, Column, Instance, score_column  # noqa: E402

PANEL_COLUMNS = 4
PANEL_SIZE = (3.6, 2.8)


def _panels(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    ncols = min(PANEL_COLUMNS, count)
    nrows = math.ceil(count / ncols)
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), squeeze=False, constrained_layout=True
    )
    flat = list(axes.flat)
    for unused in flat[count:]:
        unused.set_visible(False)
    return figure, flat[:count]


def _instance_rows(frame: pd.DataFrame, instance: Instance) -> pd.DataFrame:
    return frame[(frame[INSTANCE_KEYS] == pd.Series(instance, index=INSTANCE_KEYS)).all(axis=1)]


def _save(figure: plt.Figure, path: Path) -> Path:
    """Save as PNG through a temporary file and a rename, so a reader never sees half an image."""
    tmp = atomic_temp_file(path)
    try:
        figure.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(figure)
    return path


def learning_curves(
    curves: pd.DataFrame,
    metric: str,
    columns: Sequence[Column],
    instances: Sequence[Instance],
    path: Path,
    title: str,
) -> Path:
    """One panel per instance: mean and shaded std over seeds of the evaluation score per step."""
    curves = curves.assign(score=score_column(curves, metric)).dropna(subset=["score"])
    figure, axes = _panels(len(instances))
    present = set(zip(curves["algo"], curves["variant"], strict=True))
    plotted = [column for column in columns if (column.algo, column.variant) in present]
    palette = plt.get_cmap("tab10" if len(plotted) <= 10 else "tab20")
    colours = {column: palette(index % palette.N) for index, column in enumerate(plotted)}
    for axis, instance in zip(axes, instances, strict=True):
        here = _instance_rows(curves, instance)
        if here.empty:
            axis.text(0.5, 0.5, "no runs", ha="center", va="center", transform=axis.transAxes, color="grey")
        for column in plotted:
            runs = here[(here["algo"] == column.algo) & (here["variant"] == column.variant)]
            if runs.empty:
                continue
            by_step = runs.groupby("step")["score"].agg(mean="mean", std=lambda s: float(np.std(s)))
            colour = colours[column]
            axis.plot(by_step.index, by_step["mean"], color=colour, label=column.label, linewidth=1.2)
            axis.fill_between(
                by_step.index,
                by_step["mean"] - by_step["std"],
                by_step["mean"] + by_step["std"],
                color=colour,
                alpha=0.2,
            )
        axis.set_title("/".join(instance), fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.set_ylabel(METRIC_NAMES[metric], fontsize=8)
        axis.tick_params(labelsize=7)
    handles, labels = {}, {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
            labels.setdefault(label, label)
    if handles:
        figure.legend(list(handles.values()), list(labels), loc="outside lower center", ncol=min(6, len(handles)))
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def alpha_ablation(
    runs: pd.DataFrame,
    metric: str,
    columns: Sequence[Column],
    alphas: dict[Column, float],
    instances: Sequence[Instance],
    path: Path,
    title: str,
) -> Path:
    """Final score (mean ± std over completed seeds) against α, log x axis, one panel per instance."""
    completed = runs[runs["status"] == "completed"].assign(score=score_column(runs, metric))
    figure, axes = _panels(len(instances))
    algos = list(dict.fromkeys(column.algo for column in columns))
    for axis, instance in zip(axes, instances, strict=True):
        here = _instance_rows(completed, instance)
        for algo in algos:
            points = []
            for column in sorted((c for c in columns if c.algo == algo), key=lambda c: alphas[c]):
                scores = here[(here["algo"] == algo) & (here["variant"] == column.variant)]["score"].dropna()
                if len(scores):
                    points.append((alphas[column], float(scores.mean()), float(np.std(scores))))
            if points:
                x, mean, std = map(np.array, zip(*points, strict=True))
                axis.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=algo)
        axis.set_xscale("log")
        axis.set_title("/".join(instance), fontsize=9)
        axis.set_xlabel("α", fontsize=8)
        axis.set_ylabel(METRIC_NAMES[metric], fontsize=8)
        axis.tick_params(labelsize=7)
        if len(algos) > 1:
            axis.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def aggregate_plot(aggregate: Aggregate, path: Path, title: str) -> Path:
    """IQM of normalised scores per column with its 95% stratified-bootstrap interval."""
    columns = aggregate.columns
    figure, axis = plt.subplots(figsize=(6.0, 0.9 + 0.35 * len(columns)), constrained_layout=True)
    positions = np.arange(len(columns))[::-1]
    for position, column in zip(positions, columns, strict=True):
        estimate = aggregate.iqm[column]
        axis.plot([estimate.low, estimate.high], [position, position], color="tab:blue", linewidth=4, alpha=0.5)
        axis.plot([estimate.value], [position], marker="|", color="black", markersize=12)
    axis.set_yticks(positions, [column.label for column in columns], fontsize=8)
    axis.set_xlabel("IQM of normalised final score (95% stratified-bootstrap CI)", fontsize=8)
    axis.set_title(title, fontsize=9)
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, path)

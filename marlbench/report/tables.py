"""Tables of final scores: mean ± std over seeds per instance and column, the best of a row in
bold, every entry not significantly different from it marked, rendered as markdown.

A table is built once (:func:`score_table`) as a :class:`Table` of :class:`Cell` objects and
rendered by :func:`render_markdown` here and ``marlbench.report.latex.render_latex``, so both
formats always say the same thing.

Rules (the papers' conventions; InSPO for the significance marks):

- a cell is ``mean ± std`` over the completed seeds of the final score (the last evaluation,
  ``result.json["final"]``); std is the population std (ddof=0), as the ComaDICE tables print;
- win rates are shown in percent (result files hold fractions), returns as they are;
- the highest mean of a row is the row's best; it and every entry whose mean equals it
  (``numpy.isclose``) are bold;
- every other entry is compared with the best by Welch's two-sided t-test at 5%
  (``marlbench.report.stats``) and carries an asterisk when the difference is not significant;
  when the entry or the best has fewer than 2 completed seeds there is no test and the entry
  carries a dagger, explained under the table;
- ``(n=k)`` follows an entry with fewer completed seeds than the benchmark asks for;
  ``(k diverged)`` an entry with diverged runs; ``diverged (k)`` replaces an entry whose every
  run diverged; ``—`` is a missing run, never 0; a status from the caller (``n/a``,
  ``not implemented``, ``not run: <why>``) stands only in a cell without a finished run (results
  always win over the caller's view of what can run), and the ``not run`` reasons shown are listed
  under the table;
- a row whose completed runs all lack the metric (win rate on a suite without wins) is left out
  of that metric's table and named under it; elsewhere a completed run without the metric is left
  out of its cell and its directory named under the table;
- ``‡`` marks an entry whose published counterpart the authors' own code does not reproduce; the
  caller sets :attr:`Cell.not_reproduced` and adds the footnote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marlbench.metrics import METRIC_NAMES, PERCENT_METRICS
from marlbench.plan import NOT_RUN
from marlbench.report.results import INSTANCE_KEYS
from marlbench.report.stats import welch_test

Instance = tuple[str, str, str]
NOT_REPRODUCED_MARK = "‡"
UNTESTED_NOTE = (
    "not tested: this entry or the best entry of its row has fewer than 2 completed seeds, "
    "so Welch's t-test cannot be computed"
)


def score_column(frame: pd.DataFrame, metric: str) -> pd.Series:
    """The metric per run in display units: ``expected_return`` falls back to the sampled return
    where absent; ``win_rate`` is in percent."""
    if metric == "expected_return":
        return frame["expected_return"].fillna(frame["return_mean"])
    if metric in PERCENT_METRICS:
        return frame[metric] * 100.0
    return frame[metric]


def summarize(frame: pd.DataFrame, metric: str = "return_mean") -> pd.DataFrame:
    """One row per instance x algorithm x variant: mean, std (population, ddof=0) over
    completed seeds, the number of seeds found and of diverged runs (scores in display units)."""
    frame = frame.assign(score=score_column(frame, metric))
    keys = INSTANCE_KEYS + ["algo", "variant"]
    completed = frame[frame["status"] == "completed"]
    stats = completed.groupby(keys)["score"].agg(mean="mean", std=lambda s: float(np.std(s)), seeds="count")
    diverged = frame[frame["status"] == "diverged"].groupby(keys).size().rename("diverged")
    summary = stats.join(diverged, how="outer").reset_index()
    summary["seeds"] = summary["seeds"].fillna(0).astype(int)
    summary["diverged"] = summary["diverged"].fillna(0).astype(int)
    return summary


def markdown_table(
    summary: pd.DataFrame,
    algorithms: Sequence[str],
    instances: Sequence[Instance],
    not_applicable: set[tuple[str, Instance]] = frozenset(),
    digits: int = 2,
) -> str:
    """The demo's compact table from a :func:`summarize` frame (default variant only, no test):
    rows are instances, columns algorithms; the best mean of a row is in bold.

    A cell reads ``mean ± std`` with the seed count when fewer runs than the row's
    maximum were found; ``n/a`` where the algorithm cannot run the task, ``—`` where no
    run was found, and ``diverged (k)`` where every run diverged.
    """
    header = "| dataset | " + " | ".join(algorithms) + " |"
    lines = [header, "|" + "---|" * (len(algorithms) + 1)]
    indexed = summary.set_index(INSTANCE_KEYS + ["algo"])
    for instance in instances:
        means = {
            algo: indexed.loc[instance + (algo,), "mean"]
            for algo in algorithms
            if instance + (algo,) in indexed.index and indexed.loc[instance + (algo,), "seeds"] > 0
        }
        best = max(means.values()) if means else None
        max_seeds = max((int(indexed.loc[instance + (a,), "seeds"]) for a in means), default=0)
        cells = []
        for algo in algorithms:
            key = instance + (algo,)
            if (algo, instance) in not_applicable:
                cells.append("n/a")
            elif key not in indexed.index:
                cells.append("—")
            elif indexed.loc[key, "seeds"] == 0:
                cells.append(f"diverged ({int(indexed.loc[key, 'diverged'])})")
            else:
                row = indexed.loc[key]
                text = f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}"
                if np.isclose(row["mean"], best):
                    text = f"**{text}**"
                if int(row["seeds"]) < max_seeds:
                    text += f" (n={int(row['seeds'])})"
                if row["diverged"]:
                    text += f" ({int(row['diverged'])} diverged)"
                cells.append(text)
        lines.append(f"| {'/'.join(instance[1:])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Column:
    algo: str
    variant: str
    """The run-directory variant name (``default``, ``alpha=0.1`` …)."""
    label: str
    """The column heading."""


@dataclass
class Cell:
    """One entry. ``kind``: ``score`` (mean ± std), ``missing``, ``diverged`` (every run),
    ``status`` (a caller's reason in ``status``) or ``published`` (a paper's number in mean/std
    with ``delta`` = ours − published)."""

    kind: str
    mean: float = float("nan")
    std: float = float("nan")
    seeds: int = 0
    diverged: int = 0
    status: str = ""
    bold: bool = False
    star: bool = False
    untested: bool = False
    short: bool = False
    """Fewer completed seeds than the benchmark asks for."""
    delta: float | None = None
    not_reproduced: bool = False
    """The published number for this cell is not what the authors' own code gives (``‡``)."""


@dataclass
class Table:
    caption: str
    label: str
    columns: list[Column]
    instances: list[Instance]
    cells: dict[tuple[Instance, Column], Cell]
    digits: int = 2
    notes: list[str] = field(default_factory=list)
    """Lines printed under the table."""

    def row_label(self, instance: Instance) -> tuple[str, str]:
        """(task group, dataset) of a row; the suite joins the task when the table spans suites."""
        suites = {suite for suite, _, _ in self.instances}
        suite, task, quality = instance
        return (task if len(suites) == 1 else f"{suite}/{task}"), quality


def _format(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _score_cell(scores: np.ndarray, diverged: int, expected_seeds: int) -> Cell:
    if len(scores) == 0:
        return Cell("diverged", diverged=diverged) if diverged else Cell("missing")
    return Cell(
        "score",
        mean=float(np.mean(scores)),
        std=float(np.std(scores)),
        seeds=len(scores),
        diverged=diverged,
        short=len(scores) < expected_seeds,
    )


def _mark_row(row: dict[Column, Cell], samples: dict[Column, np.ndarray]) -> bool:
    """Bold the best, star the entries not significantly different from it; True if any entry
    went untested."""
    scored = [column for column, cell in row.items() if cell.kind == "score"]
    if not scored:
        return False
    reference = max(scored, key=lambda column: row[column].mean)
    best = row[reference].mean
    untested = False
    for column in scored:
        cell = row[column]
        if np.isclose(cell.mean, best):
            cell.bold = True
            continue
        result = welch_test(samples[reference], samples[column])
        if result is None:
            cell.untested = untested = True
        else:
            cell.star = not result.significant
    return untested


def _not_run_notes(shown: Sequence[tuple[str, Instance, str]]) -> list[str]:
    """One line per ``not run`` reason, naming the cells (algorithm, instance) that show it."""
    reasons: dict[str, list[str]] = {}
    for algo, instance, status in sorted(set(shown)):
        reason = status[len(NOT_RUN) :].lstrip(": ").strip() or "no reason given"
        reasons.setdefault(reason, []).append(f"{algo} on {'/'.join(instance)}")
    return [f"not run: {reason} ({', '.join(where)})" for reason, where in reasons.items()]


def score_table(
    runs: pd.DataFrame,
    metric: str,
    columns: Sequence[Column],
    instances: Sequence[Instance],
    expected_seeds: int,
    cell_status: Mapping[tuple[str, Instance], str] | None = None,
    caption: str = "",
    label: str = "",
) -> Table:
    """The table of one metric from a :func:`marlbench.report.results.load_results` frame that
    holds only the benchmark's runs (profile and seeds already selected)."""
    cell_status = cell_status or {}
    runs = runs.assign(score=score_column(runs, metric))
    groups = {key: group for key, group in runs.groupby(INSTANCE_KEYS + ["algo", "variant"])}
    cells: dict[tuple[Instance, Column], Cell] = {}
    any_untested = False
    completed = runs[runs["status"] == "completed"]
    without_metric = [
        instance
        for instance, group in completed.groupby(INSTANCE_KEYS)
        if group["score"].isna().all() and instance in set(instances)
    ]
    instances = [instance for instance in instances if instance not in without_metric]
    not_run: list[tuple[str, Instance, str]] = []
    unscored: list[str] = []
    for instance in instances:
        row: dict[Column, Cell] = {}
        samples: dict[Column, np.ndarray] = {}
        for column in columns:
            group = groups.get((*instance, column.algo, column.variant))
            status = cell_status.get((column.algo, instance))
            if group is None and status is not None:
                if status.startswith(NOT_RUN):
                    not_run.append((column.algo, instance, status))
                    status = NOT_RUN
                row[column] = Cell("status", status=status)
                continue
            if group is None:
                row[column] = Cell("missing")
                continue
            finished = group[group["status"] == "completed"]
            unscored += finished.loc[finished["score"].isna(), "run_dir"].tolist()
            scores = finished["score"].dropna().to_numpy(dtype=float)
            samples[column] = scores
            row[column] = _score_cell(scores, int((group["status"] == "diverged").sum()), expected_seeds)
        any_untested |= _mark_row(row, samples)
        cells.update({(instance, column): cell for column, cell in row.items()})
    notes = ([f"† {UNTESTED_NOTE}."] if any_untested else []) + _not_run_notes(not_run)
    if unscored:
        notes.append(
            f"Completed runs without the {METRIC_NAMES[metric]}, left out of their cells: {', '.join(unscored)}."
        )
    if without_metric:
        rows = ", ".join("/".join(instance) for instance in without_metric)
        notes.append(f"Rows left out, their runs do not report this metric: {rows}.")
    digits = 1 if metric in PERCENT_METRICS else 2
    return Table(caption, label, list(columns), list(instances), cells, digits, notes)


def cell_markdown(cell: Cell, digits: int) -> str:
    if cell.kind == "missing":
        return "—"
    if cell.kind == "status":
        return cell.status
    if cell.kind == "diverged":
        return f"diverged ({cell.diverged})"
    if cell.kind == "published":
        text = _format(cell.mean, digits)
        if not np.isnan(cell.std):
            text += f" ± {_format(cell.std, digits)}"
        text += NOT_REPRODUCED_MARK if cell.not_reproduced else ""
        return text if cell.delta is None else f"{text} (Δ {cell.delta:+.{digits}f})"
    text = f"{_format(cell.mean, digits)} ± {_format(cell.std, digits)}"
    if cell.bold:
        text = f"**{text}**"
    text += "*" if cell.star else "†" if cell.untested else ""
    text += NOT_REPRODUCED_MARK if cell.not_reproduced else ""
    if cell.short:
        text += f" (n={cell.seeds})"
    if cell.diverged:
        text += f" ({cell.diverged} diverged)"
    return text


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: Table) -> str:
    """The table as GitHub markdown, rows grouped by task (the task is named on its first row)."""
    headings = ["task", "dataset"] + [_markdown_escape(column.label) for column in table.columns]
    lines = ["| " + " | ".join(headings) + " |", "|---|---|" + "---:|" * len(table.columns)]
    previous_task = None
    for instance in table.instances:
        task, quality = table.row_label(instance)
        entries = [cell_markdown(table.cells[(instance, column)], table.digits) for column in table.columns]
        lines.append(f"| {task if task != previous_task else ''} | {quality} | " + " | ".join(entries) + " |")
        previous_task = task
    text = "\n".join(lines)
    if table.notes:
        text += "\n\n" + "\n".join(f"- {_markdown_escape(note)}" for note in table.notes)
    return text

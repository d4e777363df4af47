"""``build_report``: a benchmark file's results as markdown and LaTeX tables, the published
numbers beside them, an aggregate over instances, figures and a marl-eval export.

Which runs count: those below ``results_dir`` with the benchmark's profile, one of its seeds, one
of its instances and one of its columns (algorithm x variant). Every cell is looked up in the
results first; only a cell without a finished run shows the caller's status (``cell_status``:
``n/a``, ``not implemented``, ``not run: <why>``). This package imports neither torch, nor any
algorithm, nor a simulator: :func:`write_report` (``marlbench report``) takes the statuses, the
algorithms of ``algorithms: all`` and their column headings and order from the grid's plan file
beside the results (:mod:`marlbench.plan`); without one, from what the runs' ``config.json``
record (headings, column order; registry names otherwise), and says so above the tables. A result
file that cannot be read is skipped and named under the tables, as is a completed run without the
table's metric. When the runs record their provenance, the header sums it up (commits, hosts, runs
with uncommitted changes).

Published numbers (a ``load_published`` frame) are matched to our cells by instance, algorithm
and variant (``alpha=10`` and ``alpha=10.0`` are the same variant) and shown as one table per
published paper table: ``published mean ± std (Δ ours − published)``, win rates in percent;
Δ appears where we have a completed run. A separate table (rather than three numbers per cell)
keeps the 11-column tables readable in both formats. A published cell that the authors' own code
does not reproduce (``authors_code`` = ``no`` in the CSV) is marked ``‡`` with a footnote giving
what that code gives; so is our cell for the same dataset and column (``not_reproduced``: such
rows of any published table), so that a reader compares ours with what the method's code does.

Files: ``<name>.md``, ``<name>.tex`` (standalone, compiles by itself), ``<name>.csv`` (the
benchmark's runs, one row each, on request), ``<name>_curves.png`` (learning curves),
``<name>_alpha.png`` (only when the variants differ only in a numeric ``alpha``),
``<name>_aggregate.png`` with an aggregate section (``marlbench.report.aggregate``) and
``<name>_marl_eval.json`` (``marlbench.report.marl_eval``).
"""

from __future__ import annotations

import datetime
import json
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from marlbench.benchmark import Benchmark, Instance
from marlbench.data.store import write_text_atomic
from marlbench.errors import ConfigError
from marlbench.metrics import METRIC_DESCRIPTIONS, METRIC_NAMES, PERCENT_METRICS
from marlbench.plan import DEFAULT_COLUMN_ORDER, AlgorithmEntry, PlanFile, plan_path, read_plan
from marlbench.report.aggregate import COLUMN_RANGE, Aggregate, aggregate_scores
from marlbench.report.figures import aggregate_plot, alpha_ablation, learning_curves
from marlbench.report.latex import escape, render_latex, standalone_document
from marlbench.report.marl_eval import marl_eval_json
from marlbench.report.published import (
    DEFAULT_DIR,
    NOT_REPRODUCED,
    load_paper_names,
    load_published,
    published_for,
)
from marlbench.report.results import INSTANCE_KEYS, SkippedFile, read_curves, read_results
from marlbench.report.tables import NOT_REPRODUCED_MARK, Cell, Column, Table, render_markdown, score_table

FORMATS = ("md", "tex")
ENVIRONMENT_NOTE = (
    "Our environments and datasets differ from the papers' where they do: MaMuJoCo runs on "
    "gymnasium-robotics (MuJoCo v4/v5 physics, not the papers' v2) with datasets generated here "
    "unless a dataset's card says it was imported from the paper's files; SMAC results depend on the "
    "StarCraft II version. Compare orders of magnitude and rankings, not decimals."
)
LEGEND = (
    "Each entry: mean ± std (population, ddof=0) over completed seeds of the final score (the last "
    "evaluation, as the ComaDICE paper reports). Bold: the best mean of the row. *: not significantly "
    "different from the best (Welch's two-sided t-test, 5%, as the InSPO paper marks). †: not tested "
    "(fewer than 2 completed seeds). (n=k): only k seeds completed. (k diverged): runs stopped by a "
    "non-finite loss; diverged (k): every run diverged. —: no run found (missing, never 0). n/a: the "
    "algorithm's action space does not fit the task. not implemented: no algorithm of that name is "
    "registered. not run: the reason is under the table. ‡: the published number for this dataset and "
    "column is not what the authors' own code gives (under the table)."
)
NORMALISATION_WORDS = {
    "random-expert": "(score − random) / (expert − random) with the random-policy and behaviour-expert returns "
    "recorded on the dataset card",
    "payoff-range": "(score − min payoff) / (max payoff − min payoff) over the game's payoff range recorded on "
    "the dataset card",
    "win-rate": "the win rate as a fraction",
}
PROVENANCE_LISTED = 5
"""Distinct commits or hosts named in the header; the rest are counted."""


def recorded_display(runs: pd.DataFrame) -> dict[str, AlgorithmEntry]:
    """Algorithm -> the heading and column order its runs recorded (``config.json``'s ``display``;
    the first run that records them), for algorithms whose runs record any."""
    entries: dict[str, AlgorithmEntry] = {}
    if "display_name" not in runs:
        return entries
    for algo, group in runs.groupby("algo", sort=True):
        names = group["display_name"].dropna()
        orders = pd.to_numeric(group["column_order"], errors="coerce").dropna()
        if names.empty and orders.empty:
            continue
        order = int(orders.iloc[0]) if not orders.empty else DEFAULT_COLUMN_ORDER
        entries[str(algo)] = AlgorithmEntry(str(algo), str(names.iloc[0]) if not names.empty else str(algo), order)
    return entries


def report_columns(
    benchmark: Benchmark,
    runs: pd.DataFrame,
    cell_status: Mapping[tuple[str, Instance], str],
    algorithms: Sequence[str] | None = None,
    display: Mapping[str, AlgorithmEntry] | None = None,
) -> list[Column]:
    """Algorithm x variant columns. Algorithms: the benchmark's list, in its order; for
    ``algorithms: all``, ``algorithms`` (the plan's) and every algorithm with a run of the
    benchmark or a status in ``cell_status``, by column order, then name. Headings and column
    order: ``display`` (the plan's), else what the runs recorded, else the registry name."""
    ours = runs[(runs["profile"] == benchmark.profile) & _in_instances(runs, benchmark.instances)]
    known = {**recorded_display(ours), **(display or {})}
    if benchmark.algorithms is not None:
        algos = list(benchmark.algorithms)
    else:
        found = set(ours["algo"].dropna()) | {algo for algo, _ in cell_status} | set(algorithms or ())
        algos = sorted(
            found, key=lambda name: (known[name].column_order if name in known else DEFAULT_COLUMN_ORDER, name)
        )
    variants = benchmark.variants
    columns = []
    for algo in algos:
        heading = known[algo].display_name if algo in known else algo
        for variant in variants:
            if len(variants) == 1:
                label = heading
            elif len(algos) == 1:
                label = variant.label
            else:
                label = f"{heading} {variant.label}"
            columns.append(Column(algo, variant.name, label))
    return columns


def _in_instances(frame: pd.DataFrame, instances: Sequence[Instance]) -> pd.Series:
    index = pd.MultiIndex.from_tuples(list(instances), names=INSTANCE_KEYS)
    return pd.Series(pd.MultiIndex.from_frame(frame[INSTANCE_KEYS]).isin(index), index=frame.index)


def select_runs(frame: pd.DataFrame, benchmark: Benchmark, columns: Sequence[Column]) -> pd.DataFrame:
    """The rows of a ``load_results``/``load_curves`` frame that belong to the benchmark."""
    pairs = pd.MultiIndex.from_tuples([(c.algo, c.variant) for c in columns], names=["algo", "variant"])
    keep = (
        (frame["profile"] == benchmark.profile)
        & frame["seed"].isin(benchmark.seeds)
        & _in_instances(frame, benchmark.instances)
        & pd.MultiIndex.from_frame(frame[["algo", "variant"]]).isin(pairs)
    )
    return frame[keep].reset_index(drop=True)


def _canonical_variant(name: str) -> str:
    """``alpha=10.0`` and ``alpha=10`` name the same variant; so do reordered overrides."""
    parts = []
    for part in name.split(","):
        key, separator, value = part.partition("=")
        try:
            value = f"{float(value):g}"
        except ValueError:
            pass
        parts.append(f"{key}{separator}{value}")
    return ",".join(sorted(parts))


def published_tables(
    published: pd.DataFrame,
    ours: Mapping[str, Table],
    benchmark: Benchmark,
    columns: Sequence[Column],
    paper_names: Mapping[str, str] | None = None,
) -> list[tuple[str, Table]]:
    """(metric, table) per published paper table whose metric the benchmark reports; captions
    name each paper by ``paper_names`` (``papers.yaml``), else by its id."""
    paper_names = paper_names or {}
    tables = []
    published = published.assign(variant_key=published["variant"].map(_canonical_variant))
    for (paper, table_name, metric), rows in published.groupby(["paper", "table", "metric"], sort=False):
        if metric not in ours:
            continue
        scale = rows["unit"].map(lambda unit: 100.0 if unit == "fraction" else 1.0)
        rows = rows.assign(mean=rows["mean"] * scale, std=rows["std"] * scale)
        indexed = {(r.suite, r.task, r.quality, r.algo, r.variant_key): r for r in rows.itertuples(index=False)}
        cells: dict[tuple[Instance, Column], Cell] = {}
        shown: list = []
        for instance in ours[metric].instances:
            for column in columns:
                row = indexed.get((*instance, column.algo, _canonical_variant(column.variant)))
                if row is None:
                    cells[(instance, column)] = Cell("missing")
                    continue
                our_cell = ours[metric].cells[(instance, column)]
                delta = our_cell.mean - row.mean if our_cell.kind == "score" else None
                not_reproduced = getattr(row, "authors_code", None) == NOT_REPRODUCED
                cells[(instance, column)] = Cell(
                    "published", mean=row.mean, std=row.std, delta=delta, not_reproduced=not_reproduced
                )
                if not_reproduced:
                    shown.append(row)
        matched = sum(cell.kind == "published" for cell in cells.values())
        if matched == 0:
            continue
        pages = sorted({int(page) for page in rows["page"].dropna()}) if "page" in rows else []
        source = f"{paper_names.get(paper, paper)} {table_name}" + (
            f", p. {', '.join(map(str, pages))}" if pages else ""
        )
        notes = []
        others = sorted(set(rows["algo"]) - {column.algo for column in columns})
        if others:
            notes.append(f"The paper's table also reports: {', '.join(others)}.")
        notes.append(ENVIRONMENT_NOTE)
        if shown:
            notes += not_reproduced_notes(pd.DataFrame(shown), paper_names)
        caption = (
            f"Published: {source}, {METRIC_NAMES[metric]}; each entry published mean ± std "
            f"(Δ = ours − published, where we have a completed run)"
        )
        label = f"tab:{_label(benchmark.name)}-{_label(paper)}-{_label(table_name)}"
        digits = ours[metric].digits
        table = Table(caption, label, list(columns), list(ours[metric].instances), cells, digits, notes)
        tables.append((metric, table))
    return tables


def _metric_value(metric: str, value: float, unit: str) -> str:
    words = {"return_mean": "return", "expected_return": "expected return", "win_rate": "win rate"}
    if metric.startswith("joint_action_prob_"):
        return f"probability {value:g} of the joint action {metric.rsplit('_', 1)[1].upper()}"
    return f"{words.get(metric, metric)} {value:g}" + ("%" if unit == "percent" else "")


def not_reproduced_notes(rows: pd.DataFrame, paper_names: Mapping[str, str] | None = None) -> list[str]:
    """One ``‡`` footnote per published table and source, naming each cell's algorithm, dataset
    and the value the authors' own code gives (rows: published rows marked ``no``)."""
    paper_names = paper_names or {}
    notes = []
    for (paper, table, source), group in rows.groupby(["paper", "table", "annotation_source"], sort=False):
        cells: list[str] = []
        for row in group.itertuples(index=False):
            name = row.algo if row.variant == "default" else f"{row.algo} [{row.variant}]"
            unit = row.unit if row.authors_code_metric == row.metric else ""
            value = _metric_value(row.authors_code_metric, row.authors_code_value, unit)
            text = f"{name} on {row.suite}/{row.task}/{row.quality}: {value}"
            if text not in cells:
                cells.append(text)
        notes.append(
            f"{NOT_REPRODUCED_MARK} The authors' own code does not reproduce {paper_names.get(paper, paper)} "
            f"{table} here; run on the same dataset it gives {'; '.join(cells)} (source: {source})."
        )
    return notes


def mark_not_reproduced(
    table: Table, not_reproduced: pd.DataFrame, paper_names: Mapping[str, str] | None = None
) -> None:
    """Mark our entries whose published counterpart (any paper's table) the authors' own code does
    not reproduce, and add the footnotes."""
    if not_reproduced.empty:
        return
    keys = not_reproduced.assign(variant_key=not_reproduced["variant"].map(_canonical_variant))
    shown = []
    for (instance, column), cell in table.cells.items():
        if cell.kind != "score":
            continue
        match = keys[
            (keys[INSTANCE_KEYS] == pd.Series(instance, index=INSTANCE_KEYS)).all(axis=1)
            & (keys["algo"] == column.algo)
            & (keys["variant_key"] == _canonical_variant(column.variant))
        ]
        if not match.empty:
            cell.not_reproduced = True
            shown.append(match)
    if shown:
        table.notes += not_reproduced_notes(pd.concat(shown).drop(columns="variant_key"), paper_names)


def load_benchmark_published(benchmark: Benchmark) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """From ``benchmarks/published``: the tables the benchmark mirrors (None when it names none),
    and every cell of any table that the authors' own code does not reproduce (None when the
    directory is not there, as in an installed package, and the benchmark names no table)."""
    if not benchmark.published and not DEFAULT_DIR.is_dir():
        return None, None
    frame = load_published()
    published = None
    if benchmark.published:
        published = pd.concat(
            [published_for(frame, paper=r.paper, tables=[r.table], metric=r.metric) for r in benchmark.published]
        )
    return published, frame[frame["authors_code"] == NOT_REPRODUCED]


def plan_notes(plan: PlanFile | None, path: Path, benchmark: Benchmark, problem: str | None = None) -> list[str]:
    """The sentences a report says about the grid plan it used, or did not find."""
    if plan is None:
        why = f"it cannot be used ({problem})" if problem else "there is none"
        return [
            f"No grid plan beside these results: {why} ({path}; `marlbench grid` writes it, "
            "`marlbench grid FILE --plan-only` without running anything). The grid has not been planned on this "
            "machine, or its plan was not copied with the results: headings and column order come from the runs' "
            "config.json (algorithm names where they record none), and a cell without a run shows — even where "
            "the algorithm does not apply or is not implemented."
        ]
    when = f"{plan.planned_at or 'at an unrecorded time'} on {plan.host or 'an unrecorded host'}"
    notes = [f"Columns, headings and the status of cells without a run: from the grid plan made {when} ({path.name})."]
    unplanned = [instance for instance in benchmark.instances if instance not in set(plan.instances)]
    if unplanned:
        notes.append(
            f"The grid plan ({path}) does not cover {', '.join('/'.join(i) for i in unplanned)}: it was made for "
            "another version of the benchmark file; those rows show only what the runs record."
        )
    return notes


def write_report(
    benchmark: Benchmark,
    results_dir: Path | str,
    out_dir: Path | str,
    formats: Sequence[str] = FORMATS,
    csv: bool = False,
    figures: bool = True,
) -> list[Path]:
    """``marlbench report``: the report of a benchmark's runs below ``results_dir`` (its profile's
    results, ``<results>/<profile>``), reading files only. Every finished run is shown; cells
    without one take their status from the grid plan beside the results (:mod:`marlbench.plan`),
    as do the algorithms of ``algorithms: all`` and the column headings; without a plan, the runs'
    own records, and the report says so. The published tables the file mirrors stand beside ours."""
    path = plan_path(results_dir, benchmark.name)
    plan, problem = None, None
    if path.exists():
        try:
            plan = read_plan(path)
        except ConfigError as error:
            problem = str(error)
    published, not_reproduced = load_benchmark_published(benchmark)
    return build_report(
        benchmark,
        results_dir,
        out_dir,
        formats=formats,
        published=published,
        cell_status=plan.cell_status() if plan is not None else None,
        csv=csv,
        figures=figures,
        algorithms=[entry.name for entry in plan.algorithms] if plan is not None else None,
        not_reproduced=not_reproduced,
        display=plan.display() if plan is not None else None,
        header_notes=plan_notes(plan, path, benchmark, problem),
    )


def _concerns(item: SkippedFile, results_dir: Path, benchmark: Benchmark, columns: Sequence[Column]) -> bool:
    """Whether an unreadable file may belong to the benchmark: its run directory is one of the
    benchmark's cells and seeds, or its path does not follow the results layout."""
    try:
        parts = item.path.relative_to(results_dir).parts
    except ValueError:
        return True
    if len(parts) != len(INSTANCE_KEYS) + 4:
        return True
    suite, task, quality, algo, variant, seed_dir, _ = parts
    return (
        (suite, task, quality) in benchmark.instances
        and (algo, variant) in {(column.algo, column.variant) for column in columns}
        and seed_dir in {f"seed{seed}" for seed in benchmark.seeds}
    )


def _label(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _is_alpha_ablation(benchmark: Benchmark) -> dict[str, float] | None:
    """Variant name -> α when the variants differ only in a numeric ``alpha``, else None."""
    variants = benchmark.variants
    if len(variants) < 2 or not all("alpha" in variant.overrides for variant in variants):
        return None
    keys = set().union(*(variant.overrides for variant in variants))
    differing = {key for key in keys if len({repr(variant.overrides.get(key)) for variant in variants}) > 1}
    if differing != {"alpha"}:
        return None
    try:
        return {variant.name: float(variant.overrides["alpha"]) for variant in variants}
    except (TypeError, ValueError):
        return None


def _aggregate_markdown(aggregate: Aggregate) -> str:
    lines = ["| column | IQM [95% CI] | mean [95% CI] |", "|---|---:|---:|"]
    for column in aggregate.columns:
        iqm, mean = aggregate.iqm[column], aggregate.mean[column]
        lines.append(
            f"| {column.label} | {iqm.value:.3f} [{iqm.low:.3f}, {iqm.high:.3f}] "
            f"| {mean.value:.3f} [{mean.low:.3f}, {mean.high:.3f}] |"
        )
    return "\n".join(lines)


def _aggregate_latex(aggregate: Aggregate, caption: str, label: str) -> str:
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{lrr}",
        r"\toprule",
        r"column & IQM [95\% CI] & mean [95\% CI] \\",
        r"\midrule",
    ]
    for column in aggregate.columns:
        iqm, mean = aggregate.iqm[column], aggregate.mean[column]
        lines.append(
            f"{escape(column.label)} & {iqm.value:.3f} [{iqm.low:.3f}, {iqm.high:.3f}] & "
            f"{mean.value:.3f} [{mean.low:.3f}, {mean.high:.3f}] \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _normalisation_text(aggregate: Aggregate) -> str:
    """How the instances were normalised, naming every instance that fell back to the column range."""
    by_kind: dict[str, list[Instance]] = {}
    for instance, normalisation in aggregate.normalisation.items():
        by_kind.setdefault(normalisation.kind, []).append(instance)
    fallback = by_kind.pop(COLUMN_RANGE, [])
    sentences = []
    if by_kind:
        fixed = "; ".join(
            f"{NORMALISATION_WORDS.get(kind, kind)} ({len(instances)} instance{'s' * (len(instances) > 1)})"
            for kind, instances in by_kind.items()
        )
        sentences.append(
            f"Scores normalised per instance against fixed references, as D4RL's normalised score: {fixed}."
        )
    if fallback:
        where = "; ".join(f"{'/'.join(instance)} ({aggregate.normalisation[instance].reason})" for instance in fallback)
        sentences.append(
            "Without references, min-max over the compared columns' mean scores (best column mean 1, worst 0) "
            f"on {where}: these scores change when a column is added or removed."
        )
    return " ".join(sentences)


def _aggregate_text(aggregate: Aggregate, metric: str) -> str:
    text = (
        f"Interquartile mean (IQM) and mean over instances of the final {METRIC_NAMES[metric]}, normalised; "
        f"95% stratified-bootstrap confidence intervals; "
        f"{len(aggregate.instances)} instances x {aggregate.runs_per_instance} runs per column. "
        f"{_normalisation_text(aggregate)}"
    )
    if aggregate.left_out_columns:
        text += f" Columns without completed runs: {', '.join(column.label for column in aggregate.left_out_columns)}."
    if aggregate.left_out:
        left = "; ".join(f"{'/'.join(instance)} ({why})" for instance, why in aggregate.left_out.items())
        text += f" Left out: {left}."
    return text


def build_report(
    benchmark: Benchmark,
    results_dir: Path | str,
    out_dir: Path | str,
    formats: Sequence[str] = FORMATS,
    published: pd.DataFrame | None = None,
    cell_status: Mapping[tuple[str, Instance], str] | None = None,
    csv: bool = False,
    figures: bool = True,
    algorithms: Sequence[str] | None = None,
    standalone: bool = True,
    not_reproduced: pd.DataFrame | None = None,
    display: Mapping[str, AlgorithmEntry] | None = None,
    header_notes: Sequence[str] = (),
    paper_names: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``out_dir/<name>.md`` / ``.tex`` (and ``.csv``, figures, the marl-eval JSON);
    return the written paths. ``algorithms`` and ``display`` (the plan's): the algorithms of
    ``algorithms: all`` and the column headings and order (see :func:`report_columns`).
    ``not_reproduced``: published rows (any table) marked ``authors_code`` = ``no``; our entries
    for the same dataset and column get the ``‡`` footnote. ``header_notes``: sentences above the
    tables. ``paper_names``: paper id -> name in captions (default: ``papers.yaml`` of
    ``benchmarks/published``)."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigError(f"--format: expected a subset of {', '.join(FORMATS)}, found {', '.join(unknown)}")
    cell_status = dict(cell_status or {})
    paper_names = load_paper_names() if paper_names is None else paper_names
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_runs, skipped = read_results(results_dir)
    all_curves, skipped_curves = read_curves(results_dir)
    columns = report_columns(benchmark, all_runs, cell_status, algorithms, display)
    runs = select_runs(all_runs, benchmark, columns)
    curves = select_runs(all_curves, benchmark, columns)
    skipped_notes = [
        f"Skipped, unreadable: {item}."
        for item in skipped + skipped_curves
        if _concerns(item, Path(results_dir), benchmark, columns)
    ]
    name = benchmark.name
    written: list[Path] = []

    tables = {
        metric: score_table(
            runs,
            metric,
            columns,
            benchmark.instances,
            len(benchmark.seeds),
            cell_status,
            caption=f"{benchmark.title}: final {METRIC_NAMES[metric]}, mean ± std over seeds",
            label=f"tab:{_label(name)}-{_label(metric)}",
        )
        for metric in benchmark.metrics
    }
    for table in tables.values():
        if not_reproduced is not None:
            mark_not_reproduced(table, not_reproduced, paper_names)
        table.notes += skipped_notes
    published_by_metric: dict[str, list[Table]] = {}
    if published is not None and not published.empty:
        for metric, table in published_tables(published, tables, benchmark, columns, paper_names):
            published_by_metric.setdefault(metric, []).append(table)
    aggregate = aggregate_scores(runs, benchmark.metric, columns, benchmark.instances)

    figure_list = _write_figures(benchmark, runs, curves, columns, aggregate, out_dir) if figures else []
    written += [figure.path for figure in figure_list]

    header = _header(benchmark, runs, header_notes)
    texts: dict[str, str] = {}
    if "md" in formats:
        texts["md"] = _markdown(benchmark, header, tables, published_by_metric, aggregate, figure_list)
    if "tex" in formats:
        body = _latex(benchmark, header, tables, published_by_metric, aggregate, figure_list)
        texts["tex"] = standalone_document(body) if standalone else body + "\n"
    if csv:
        texts["csv"] = runs.to_csv(index=False)
    for suffix, text in texts.items():
        write_text_atomic(out_dir / f"{name}.{suffix}", text)
        written.append(out_dir / f"{name}.{suffix}")
    path = out_dir / f"{name}_marl_eval.json"
    write_text_atomic(path, json.dumps(marl_eval_json(runs, curves, columns), indent=1) + "\n")
    written.append(path)
    return written


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str
    width: float
    """Fraction of the line width in the LaTeX document."""


def _write_figures(
    benchmark: Benchmark,
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    columns: Sequence[Column],
    aggregate: Aggregate | None,
    out_dir: Path,
) -> list[Figure]:
    name, metric = benchmark.name, METRIC_NAMES[benchmark.metric]
    written = []
    if not curves.empty:
        path = out_dir / f"{name}_curves.png"
        title = f"{benchmark.title}: evaluation {metric} during training"
        learning_curves(curves, benchmark.metric, columns, benchmark.instances, path, title)
        caption = f"Learning curves: evaluation {metric} against gradient step, mean (line) ± std (band) over seeds."
        written.append(Figure(path, caption, 1.0))
    alphas = _is_alpha_ablation(benchmark)
    if alphas is not None and not runs.empty:
        path = out_dir / f"{name}_alpha.png"
        title = f"{benchmark.title}: final {metric} against α"
        alpha_ablation(
            runs, benchmark.metric, columns, {c: alphas[c.variant] for c in columns}, benchmark.instances, path, title
        )
        caption = f"Final {metric} against α (log scale), mean ± std over seeds, as in ComaDICE Figure 1."
        written.append(Figure(path, caption, 1.0))
    if aggregate is not None:
        path = out_dir / f"{name}_aggregate.png"
        aggregate_plot(aggregate, path, f"{benchmark.title}: aggregate over instances")
        caption = f"IQM of the normalised final {metric} per column with its 95% stratified-bootstrap interval."
        written.append(Figure(path, caption, 0.5))
    return written


def _counted(values: pd.Series, unit: str) -> str:
    """``a (3 runs), b (1 run)``, most frequent first, the tail beyond PROVENANCE_LISTED counted."""
    counts = sorted(values.value_counts().items(), key=lambda item: (-item[1], item[0]))
    listed = [f"{value} ({count} {unit}{'s' * (count > 1)})" for value, count in counts[:PROVENANCE_LISTED]]
    if len(counts) > PROVENANCE_LISTED:
        listed.append(f"{len(counts) - PROVENANCE_LISTED} more")
    return ", ".join(listed)


def provenance_line(runs: pd.DataFrame) -> str | None:
    """The runs' commits, hosts and uncommitted changes in one sentence; None when no run records
    its provenance (result files written before marlbench recorded it)."""
    recorded = runs[runs[["commit", "dirty", "host"]].notna().any(axis=1)]
    if recorded.empty:
        return None
    parts = []
    if recorded["commit"].notna().any():
        parts.append("commits " + _counted(recorded["commit"].dropna().str[:12], "run"))
    if recorded["host"].notna().any():
        parts.append("hosts " + _counted(recorded["host"].dropna(), "run"))
    if "cpu" in recorded and recorded["cpu"].notna().any():
        parts.append("CPUs " + _counted(recorded["cpu"].dropna(), "run"))
    dirty = int(recorded["dirty"].eq(True).sum())
    unknown = int(recorded["dirty"].isna().sum())
    parts.append(
        f"{dirty} run{'s' * (dirty != 1)} with uncommitted changes"
        + (f" ({unknown} without the flag)" if unknown else "")
    )
    if len(recorded) < len(runs):
        parts.append(f"{len(runs) - len(recorded)} without provenance")
    return f"Provenance of the {len(runs)} runs in the tables: {'; '.join(parts)}."


def _header(benchmark: Benchmark, runs: pd.DataFrame, notes: Sequence[str] = ()) -> list[str]:
    """Sentences above the tables (plain text; each format escapes them)."""
    seeds = ", ".join(map(str, benchmark.seeds))
    lines = [
        f"Benchmark file {benchmark.path.name}" + (f"; mirrors {benchmark.mirrors}." if benchmark.mirrors else "."),
        f"Profile {benchmark.profile}; seeds {seeds}.",
        *(f"Metric {METRIC_NAMES[m]}: {METRIC_DESCRIPTIONS[m]}." for m in benchmark.metrics),
    ]
    if any(metric in PERCENT_METRICS for metric in benchmark.metrics):
        lines.append("Win rates are in percent.")
    provenance = provenance_line(runs)
    if provenance is not None:
        lines.append(provenance)
    lines += notes
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines.append(f"Report made {made} UTC on {socket.gethostname()}.")
    return [*lines, LEGEND]


def _markdown(
    benchmark: Benchmark,
    header: list[str],
    tables: dict[str, Table],
    published_by_metric: dict[str, list[Table]],
    aggregate: Aggregate | None,
    figure_list: list[Figure],
) -> str:
    parts = [f"# {benchmark.title}", "\n".join(line.replace("*", "\\*") for line in header)]
    for metric, table in tables.items():
        parts += [f"## {table.caption}", render_markdown(table)]
        for published_table in published_by_metric.get(metric, []):
            parts += [f"### {published_table.caption}", render_markdown(published_table)]
    if aggregate is not None:
        parts += ["## Aggregate over instances", _aggregate_text(aggregate, benchmark.metric)]
        parts.append(_aggregate_markdown(aggregate))
    if figure_list:
        parts.append("## Figures")
        parts += [f"![{figure.caption}]({figure.path.name})" for figure in figure_list]
    return "\n\n".join(parts) + "\n"


def _latex(
    benchmark: Benchmark,
    header: list[str],
    tables: dict[str, Table],
    published_by_metric: dict[str, list[Table]],
    aggregate: Aggregate | None,
    figure_list: list[Figure],
) -> str:
    parts = [rf"\section*{{{escape(benchmark.title)}}}", "\n".join(escape(line) for line in header)]
    for metric, table in tables.items():
        parts.append(render_latex(table))
        parts += [render_latex(published_table) for published_table in published_by_metric.get(metric, [])]
    if aggregate is not None:
        parts.append(escape(_aggregate_text(aggregate, benchmark.metric)))
        label = f"tab:{_label(benchmark.name)}-aggregate"
        parts.append(_aggregate_latex(aggregate, f"{benchmark.title}: aggregate over instances", label))
    for figure in figure_list:
        parts.append(
            "\\begin{figure}[htbp]\n\\centering\n"
            f"\\includegraphics[width={figure.width}\\linewidth,height=0.8\\textheight,keepaspectratio]"
            f"{{{figure.path.name}}}\n\\caption{{{escape(figure.caption)}}}\n\\end{{figure}}"
        )
    parts.append(r"\clearpage")
    return "\n\n".join(parts)

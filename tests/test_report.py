"""The reporting layer on synthetic run directories written here with the keys ``marlbench.train``
writes: bolding, Welch asterisks against a hand-computed t statistic and p-value, missing,
diverged and single-seed entries, the exact markdown and LaTeX of a 2x2 table, the published
side-by-side, figures, the IQM aggregate, and the marl-eval export."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rliable.metrics import aggregate_iqm

from marlbench.benchmark import DEFAULT_VARIANT, Benchmark, Variant
from marlbench.report.aggregate import aggregate_scores, iqm_of_rows
from marlbench.report.build import build_report, report_columns, select_runs
from marlbench.report.latex import render_latex
from marlbench.report.results import load_curves, load_results
from marlbench.report.stats import welch_test
from marlbench.report.tables import Column, render_markdown, score_table

MEDIUM = ("mamujoco", "hopper", "medium")
EXPERT = ("mamujoco", "hopper", "expert")
EVAL_STEPS = (50, 100)


def write_run(
    results: Path,
    instance: tuple[str, str, str],
    algo: str,
    seed: int,
    score: float,
    variant: str = "default",
    status: str = "completed",
    profile: str = "smoke",
    win_rate: float | None = None,
    references: dict | None = None,
    provenance: dict | None = None,
) -> Path:
    """A run directory as ``marlbench.train`` leaves it; evaluations rise linearly to ``score``.
    ``references``: the dataset card's ``reference_returns``; ``provenance``: result.json's."""
    suite, task, quality = instance
    run_dir = results / suite / task / quality / algo / variant / f"seed{seed}"
    run_dir.mkdir(parents=True)
    keys = {"algo": algo, "suite": suite, "task": task, "quality": quality, "seed": seed, "variant": variant}
    source = {"generator": "test"} if references is None else {"generator": "test", "reference_returns": references}
    config = {
        **keys,
        "profile": {"name": profile, "steps": EVAL_STEPS[-1]},
        "user_overrides": {},
        "dataset": {"source": source},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    evaluations = [] if status != "completed" else EVAL_STEPS
    lines = [{"step": 10, "kind": "train", "loss": 0.5}]
    final = None
    for index, step in enumerate(evaluations, start=1):
        final = {
            "return_mean": score * index / len(evaluations),
            "return_std": 0.0,
            "win_rate": win_rate,
            "episodes": 4,
        }
        lines.append({"step": step, "kind": "eval", **final})
    if status == "diverged":
        lines.append({"step": 20, "kind": "diverged", "loss": "nan"})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = {
        **keys,
        "profile": profile,
        "steps": EVAL_STEPS[-1] if status == "completed" else 20,
        "status": status,
        "diverged_step": None if status == "completed" else 20,
        "final": final,
        "wall_time_s": 1.0,
        "config": config,
    }
    if provenance is not None:
        result["provenance"] = provenance
    (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def make_benchmark(
    instances=(MEDIUM, EXPERT),
    algorithms=("bc", "comadice"),
    seeds=(0, 1, 2),
    metric="return_mean",
    variants=(DEFAULT_VARIANT,),
    name="tiny",
) -> Benchmark:
    return Benchmark(
        name=name,
        title="Tiny table",
        mirrors="ComaDICE Table 3",
        profile="smoke",
        metric=metric,
        algorithms=algorithms,
        seeds=seeds,
        instances=tuple(instances),
        path=Path(f"{name}.yaml"),
        variants=tuple(variants),
    )


def write_two_by_two(results: Path) -> None:
    """medium: bc {1,2,3} vs comadice {3,4,5}; expert: bc {4,5,6} vs comadice {1,2,3}."""
    for seed in range(3):
        write_run(results, MEDIUM, "bc", seed, 1 + seed)
        write_run(results, MEDIUM, "comadice", seed, 3 + seed)
        write_run(results, EXPERT, "bc", seed, 4 + seed)
        write_run(results, EXPERT, "comadice", seed, 1 + seed)


def table_for(results: Path, benchmark: Benchmark, cell_status=None, metric=None):
    columns = report_columns(benchmark, load_results(results), cell_status or {})
    runs = select_runs(load_results(results), benchmark, columns)
    return score_table(
        runs,
        metric or benchmark.metric,
        columns,
        benchmark.instances,
        len(benchmark.seeds),
        cell_status,
        caption="Tiny table: final return",
        label="tab:tiny",
    )


def welch_by_hand(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """t, Welch-Satterthwaite degrees of freedom, and the two-sided p-value for df = 4 from the
    closed-form Student t CDF with 4 degrees of freedom, F(t) = 1/2 + 3/4 x (1 - x^2/3),
    x = t / sqrt(4 + t^2)."""
    n_a, n_b = len(a), len(b)
    mean_a, mean_b = sum(a) / n_a, sum(b) / n_b
    var_a = sum((v - mean_a) ** 2 for v in a) / (n_a - 1)
    var_b = sum((v - mean_b) ** 2 for v in b) / (n_b - 1)
    se_a, se_b = var_a / n_a, var_b / n_b
    t = (mean_a - mean_b) / math.sqrt(se_a + se_b)
    df = (se_a + se_b) ** 2 / (se_a**2 / (n_a - 1) + se_b**2 / (n_b - 1))
    x = abs(t) / math.sqrt(4 + t * t)
    cdf = 0.5 + 0.75 * x * (1 - x * x / 3)
    return t, df, 2 * (1 - cdf)


def test_welch_test_matches_the_formula_by_hand() -> None:
    for best, other in (([3, 4, 5], [1, 2, 3]), ([4, 5, 6], [1, 2, 3])):
        t, df, p = welch_by_hand(best, other)
        assert df == pytest.approx(4.0)
        result = welch_test(best, other)
        assert result.t == pytest.approx(t, rel=1e-12)
        assert result.p == pytest.approx(p, rel=1e-9)
    assert welch_by_hand([3, 4, 5], [1, 2, 3])[2] == pytest.approx(0.070484, abs=1e-6)  # > 5%: not significant
    assert welch_by_hand([4, 5, 6], [1, 2, 3])[2] == pytest.approx(0.021312, abs=1e-6)  # < 5%: significant


def test_welch_test_zero_variance_and_small_samples(recwarn: pytest.WarningsRecorder) -> None:
    assert welch_test([1.0, 1.0], [1.0, 1.0]).p == 1.0
    different = welch_test([2.0, 2.0], [1.0, 1.0])
    assert different.p == 0.0 and different.t == math.inf and different.significant
    assert welch_test([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]).p == pytest.approx(1.0)  # one sample without spread
    assert welch_test([1.0], [1.0, 2.0]) is None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_two_by_two_markdown_and_latex_text(tmp_path: Path) -> None:
    write_two_by_two(tmp_path / "results")
    table = table_for(tmp_path / "results", make_benchmark())
    medium_bc = table.cells[(MEDIUM, Column("bc", "default", "bc"))]
    assert medium_bc.star and not medium_bc.bold  # p = 0.070 >= 0.05
    expert_comadice = table.cells[(EXPERT, Column("comadice", "default", "comadice"))]
    assert not expert_comadice.star and not expert_comadice.bold  # p = 0.021 < 0.05
    assert render_markdown(table) == (
        "| task | dataset | bc | comadice |\n"
        "|---|---|---:|---:|\n"
        "| hopper | medium | 2.00 ± 0.82* | **4.00 ± 0.82** |\n"
        "|  | expert | **5.00 ± 0.82** | 2.00 ± 0.82 |"
    )
    assert render_latex(table) == (
        "\\begin{table}[htbp]\n"
        "\\centering\n"
        "\\caption{Tiny table: final return}\n"
        "\\label{tab:tiny}\n"
        "\\begin{adjustbox}{max width=\\linewidth, max totalheight=0.8\\textheight}\n"
        "\\begin{tabular}{llrr}\n"
        "\\toprule\n"
        "task & dataset & bc & comadice \\\\\n"
        "\\midrule\n"
        "hopper & medium & 2.00 $\\pm$ 0.82$^*$ & \\textbf{4.00 $\\pm$ 0.82} \\\\\n"
        " & expert & \\textbf{5.00 $\\pm$ 0.82} & 2.00 $\\pm$ 0.82 \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\end{adjustbox}\n"
        "\\end{table}"
    )


def test_missing_diverged_single_seed_and_status_cells(tmp_path: Path) -> None:
    results = tmp_path / "results"
    ant = ("mamujoco", "ant", "expert")
    write_run(results, MEDIUM, "bc", 0, 7.0)
    write_run(results, MEDIUM, "bc", 1, 0.0, status="diverged")
    for seed in range(3):
        write_run(results, MEDIUM, "comadice", seed, 8.0 + seed)
    write_run(results, EXPERT, "comadice", 0, 5.0)
    write_run(results, EXPERT, "comadice", 1, 6.0)
    write_run(results, EXPERT, "bc", 0, 1.0, status="diverged")
    write_run(results, EXPERT, "bc", 1, 1.0, status="diverged")
    write_run(results, ant, "bc", 0, 3.0, profile="paper")  # another profile: not this benchmark's
    write_run(results, ant, "bc", 7, 3.0)  # a seed the benchmark does not list
    benchmark = make_benchmark(instances=(MEDIUM, EXPERT, ant), algorithms=("bc", "comadice", "omsd", "inspo"))
    status = {("omsd", MEDIUM): "not run: dataset missing", ("inspo", MEDIUM): "n/a", ("inspo", EXPERT): "n/a"}
    text = render_markdown(table_for(results, benchmark, status))
    assert text.splitlines()[2:] == [
        "| hopper | medium | 7.00 ± 0.00† (n=1) (1 diverged) | **9.00 ± 0.82** | not run | n/a |",
        "|  | expert | diverged (2) | **5.50 ± 0.50** (n=2) | — | n/a |",
        "| ant | expert | — | — | — | — |",
        "",
        "- † not tested: this entry or the best entry of its row has fewer than 2 completed seeds, so Welch's "
        "t-test cannot be computed.",
        "- not run: dataset missing (omsd on mamujoco/hopper/medium)",
    ]


def test_ties_are_all_bold_and_win_rates_in_percent(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, MEDIUM, "bc", seed, 1.0, win_rate=0.5)
        write_run(results, MEDIUM, "comadice", seed, 1.0, win_rate=0.5)
    table = table_for(results, make_benchmark(instances=(MEDIUM,), seeds=(0, 1)), metric="win_rate")
    assert render_markdown(table).splitlines()[2] == "| hopper | medium | **50.0 ± 0.0** | **50.0 ± 0.0** |"


def test_rows_without_the_metric_are_left_out(tmp_path: Path) -> None:
    results = tmp_path / "results"
    smac = ("smacv1", "5m_vs_6m", "good")
    for seed in range(2):
        write_run(results, smac, "bc", seed, 10.0 + seed, win_rate=0.25 * seed)
        write_run(results, MEDIUM, "bc", seed, 5.0)
    benchmark = make_benchmark(instances=(smac, MEDIUM), algorithms=("bc",), seeds=(0, 1), metric="win_rate")
    lines = render_markdown(table_for(results, benchmark)).splitlines()
    assert lines[2:] == [
        "| 5m_vs_6m | good | **12.5 ± 12.5** |",
        "",
        "- Rows left out, their runs do not report this metric: mamujoco/hopper/medium.",
    ]


def test_published_side_by_side(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    rows = [
        ("comadice", "Table 3", 5, *MEDIUM, "comadice", "default", "return_mean", "return", 4.5, 0.5, ""),
        ("comadice", "Table 3", 5, *EXPERT, "bc", "default", "return_mean", "return", 6.0, float("nan"), ""),
        ("comadice", "Table 3", 5, *EXPERT, "cfcql", "default", "return_mean", "return", 9.0, 1.0, ""),
        ("inspo", "Table 4", 6, *MEDIUM, "bc", "default", "win_rate", "fraction", 0.5, 0.1, ""),
    ]
    columns = ["paper", "table", "page", "suite", "task", "quality", "algo", "variant"]
    published = pd.DataFrame(rows, columns=columns + ["metric", "unit", "mean", "std", "note"])
    written = build_report(make_benchmark(), results, tmp_path / "reports", published=published, figures=False)
    text = (tmp_path / "reports" / "tiny.md").read_text()
    assert "### Published: ComaDICE Table 3, p. 5, return" in text
    assert "| hopper | medium | — | 4.50 ± 0.50 (Δ -0.50) |" in text
    assert "|  | expert | 6.00 (Δ -1.00) | — |" in text
    build_report(make_benchmark(), tmp_path / "none", tmp_path / "empty", published=published, figures=False)
    assert "| hopper | medium | — | 4.50 ± 0.50 |" in (tmp_path / "empty" / "tiny.md").read_text()
    assert "The paper's table also reports: cfcql." in text
    assert "differ from the papers' where they do" in text
    assert "Published: InSPO" not in text  # a win-rate table is not part of a return benchmark
    tex = (tmp_path / "reports" / "tiny.tex").read_text()
    assert r"4.50 $\pm$ 0.50 ($\Delta$ $-$0.50)" in tex
    assert {path.name for path in written} == {"tiny.md", "tiny.tex", "tiny_marl_eval.json"}


def test_published_variants_match_numerically_and_fractions_become_percent(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, MEDIUM, "comadice", seed, 1.0, variant="alpha=10.0", win_rate=0.5)
    benchmark = make_benchmark(
        instances=(MEDIUM,), algorithms=("comadice",), seeds=(0, 1), metric="win_rate",
        variants=(Variant("α = 10", {"alpha": 10.0}), Variant("α = 1", {"alpha": 1.0})),
    )  # fmt: skip
    row = ("inspo", "Table 4", 6, *MEDIUM, "comadice", "alpha=10", "win_rate", "fraction", 0.4, 0.1, "")
    published = pd.DataFrame(
        [row],
        columns=["paper", "table", "page", "suite", "task", "quality", "algo", "variant"]
        + ["metric", "unit", "mean", "std", "note"],
    )
    build_report(benchmark, results, tmp_path / "reports", formats=("md",), published=published, figures=False)
    text = (tmp_path / "reports" / "tiny.md").read_text()
    assert "| task | dataset | α = 10 | α = 1 |" in text
    assert "| hopper | medium | 40.0 ± 10.0 (Δ +10.0) | — |" in text


def test_build_report_writes_figures_csv_and_aggregate(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    written = build_report(make_benchmark(), results, tmp_path / "reports", csv=True)
    names = {path.name for path in written}
    assert names == {
        "tiny.md",
        "tiny.tex",
        "tiny.csv",
        "tiny_curves.png",
        "tiny_aggregate.png",
        "tiny_marl_eval.json",
    }
    for path in written:
        assert path.stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "reports" / "tiny.csv")) == 12
    text = (tmp_path / "reports" / "tiny.md").read_text()
    assert "## Aggregate over instances" in text and "![Learning curves" in text
    tex = (tmp_path / "reports" / "tiny.tex").read_text()
    assert tex.startswith("\\documentclass") and "\\toprule" in tex and "\\bottomrule" in tex
    assert "\\includegraphics[width=1.0\\linewidth" in tex


def test_alpha_ablation_figure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    alphas = (0.1, 1.0, 10.0)
    variants = tuple(Variant(f"α = {alpha:g}", {"alpha": alpha}) for alpha in alphas)
    for variant in variants:
        for seed in range(2):
            write_run(results, MEDIUM, "comadice", seed, variant.overrides["alpha"] + seed, variant=variant.name)
    benchmark = make_benchmark(instances=(MEDIUM,), algorithms=("comadice",), seeds=(0, 1), variants=variants)
    written = build_report(benchmark, results, tmp_path / "reports", formats=("md",))
    assert (tmp_path / "reports" / "tiny_alpha.png") in written
    assert (tmp_path / "reports" / "tiny_alpha.png").stat().st_size > 0


def test_iqm_aggregate_by_hand(tmp_path: Path) -> None:
    """medium: A {0,1,2,3} (mean 1.5), B {2,3,4,5} (mean 3.5) -> (x - 1.5) / 2;
    expert: A {10,10,10,10} (mean 10), B {0,0,0,20} (mean 5) -> (x - 5) / 5.
    A's 8 normalised scores: -0.75 -0.25 0.25 0.75 1 1 1 1 -> IQM (middle 4) 0.75, mean 0.5;
    B's: -1 -1 -1 0.25 0.75 1.25 1.75 3 -> IQM mean(-1, 0.25, 0.75, 1.25) = 0.3125, mean 0.5."""
    results = tmp_path / "results"
    scores = {
        (MEDIUM, "bc"): [0, 1, 2, 3],
        (MEDIUM, "comadice"): [2, 3, 4, 5],
        (EXPERT, "bc"): [10, 10, 10, 10],
        (EXPERT, "comadice"): [0, 0, 0, 20],
    }
    for (instance, algo), values in scores.items():
        for seed, value in enumerate(values):
            write_run(results, instance, algo, seed, value)
    benchmark = make_benchmark(seeds=(0, 1, 2, 3))
    columns = report_columns(benchmark, load_results(results), {})
    runs = select_runs(load_results(results), benchmark, columns)
    aggregate = aggregate_scores(runs, "return_mean", columns, benchmark.instances)
    bc, comadice = columns
    assert aggregate.runs_per_instance == 4 and aggregate.instances == [MEDIUM, EXPERT]
    assert aggregate.iqm[bc].value == pytest.approx(0.75)
    assert aggregate.iqm[comadice].value == pytest.approx(0.3125)
    assert aggregate.mean[bc].value == pytest.approx(0.5)
    assert aggregate.mean[comadice].value == pytest.approx(0.5)
    for estimate in (*aggregate.iqm.values(), *aggregate.mean.values()):
        assert estimate.low <= estimate.value <= estimate.high
    np.testing.assert_allclose(aggregate.normalised[bc][:, 0], [-0.75, -0.25, 0.25, 0.75])
    rows = np.random.default_rng(0).normal(size=(5, 12))
    np.testing.assert_allclose(iqm_of_rows(rows), [aggregate_iqm(row.reshape(3, 4)) for row in rows])
    again = aggregate_scores(runs, "return_mean", columns, benchmark.instances)
    assert again.iqm[comadice] == aggregate.iqm[comadice]  # fixed bootstrap seed: reproducible


def test_aggregate_leaves_out_uninformative_instances_and_empty_columns(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, MEDIUM, "bc", seed, 1.0 + seed)
        write_run(results, MEDIUM, "comadice", seed, 3.0 + seed)
        write_run(results, EXPERT, "bc", seed, 1.0)
        write_run(results, EXPERT, "comadice", seed, 1.0)
    benchmark = make_benchmark(algorithms=("bc", "comadice", "omsd"), seeds=(0, 1))
    columns = report_columns(benchmark, load_results(results), {})
    aggregate = aggregate_scores(load_results(results), "return_mean", columns, benchmark.instances)
    assert [column.algo for column in aggregate.left_out_columns] == ["omsd"]
    assert aggregate.instances == [MEDIUM]
    assert aggregate.left_out == {EXPERT: "every column has the same mean"}


def test_load_curves_reads_evaluation_lines(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results, MEDIUM, "bc", 0, 4.0)
    write_run(results, MEDIUM, "bc", 1, 4.0, status="diverged")
    with (results / "mamujoco/hopper/medium/bc/default/seed0/metrics.jsonl").open("a") as handle:
        handle.write('{"step": 150, "kind": "ev')  # a line cut off by a killed run
    curves = load_curves(results)
    assert curves[["seed", "step", "return_mean"]].values.tolist() == [[0, 50, 2.0], [0, 100, 4.0]]
    assert set(curves["profile"]) == {"smoke"}


def test_marl_eval_json_structure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    write_run(results, MEDIUM, "bc", 3, 0.0, status="diverged")
    build_report(make_benchmark(seeds=(0, 1, 2, 3)), results, tmp_path / "reports", formats=(), figures=False)
    data = json.loads((tmp_path / "reports" / "tiny_marl_eval.json").read_text())
    assert list(data) == ["mamujoco"]
    assert sorted(data["mamujoco"]) == ["hopper_expert", "hopper_medium"]
    runs = data["mamujoco"]["hopper_medium"]["bc"]
    assert sorted(runs) == ["seed_0", "seed_1", "seed_2"]  # the diverged seed 3 is not exported
    assert runs["seed_2"] == {
        "step_0": {"step_count": 50, "episode_return": [1.5]},
        "step_1": {"step_count": 100, "episode_return": [3.0]},
        "absolute_metrics": {"episode_return": [3.0]},
    }


def test_legacy_demo_table_still_works(tmp_path: Path) -> None:
    from marlbench.report import markdown_table, summarize

    write_two_by_two(tmp_path / "results")
    summary = summarize(load_results(tmp_path / "results"), "return_mean")
    text = markdown_table(summary, ["bc", "comadice"], [MEDIUM, EXPERT])
    assert text.splitlines()[2] == "| hopper/medium | 2.00 ± 0.82 | **4.00 ± 0.82** |"


def test_report_package_imports_neither_torch_nor_algorithms() -> None:
    code = (
        "import sys, marlbench.report.build, marlbench.report; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('algorithms')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (apt: texlive-latex-base)")
def test_latex_report_compiles_with_pdflatex(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_two_by_two(results)
    write_run(results, EXPERT, "bc", 3, 0.0, status="diverged")
    benchmark = make_benchmark(algorithms=("bc", "comadice", "omsd", "inspo", "omiga"), seeds=(0, 1, 2, 3))
    status = {("omsd", MEDIUM): "not run: no dataset_file_here & 100% missing", ("inspo", EXPERT): "n/a"}
    build_report(benchmark, results, tmp_path / "reports", formats=("tex",), cell_status=status)
    completed = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tiny.tex"],
        cwd=tmp_path / "reports",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert (tmp_path / "reports" / "tiny.pdf").stat().st_size > 0

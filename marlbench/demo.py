"""The demo: every registered algorithm on a benchmark file's instances, trials in
parallel worker processes, then a markdown table of the final scores."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from marlbench.algorithm import all_algorithms, get_algorithm
from marlbench.benchmark import Benchmark, Instance
from marlbench.data.paths import dataset_root
from marlbench.envs.registry import get_suite
from marlbench.report import load_results, markdown_table, summarize
from marlbench.report.tables import METRIC_DESCRIPTIONS
from marlbench.train import RunRequest, train


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run(request: RunRequest) -> str:
    return str(train(request).run_dir)


def plan_runs(
    benchmark: Benchmark, results: Path, data: Path | None
) -> tuple[list[RunRequest], list[str], set[tuple[str, Instance]]]:
    """Every (algorithm, instance, seed) request, the algorithm names, and the pairs that cannot run."""
    names = list(all_algorithms()) if benchmark.algorithms is None else list(benchmark.algorithms)
    requests, not_applicable = [], set()
    for instance in benchmark.instances:
        suite_name, task, quality = instance
        spec = get_suite(suite_name).task(task).spec
        for name in names:
            if spec.action_type not in get_algorithm(name).action_types:
                not_applicable.add((name, instance))
                continue
            requests += [
                RunRequest(name, suite_name, task, quality, seed, profile=benchmark.profile, results=results, data=data)
                for seed in benchmark.seeds
            ]
    return requests, names, not_applicable


def run_demo(benchmark_path: Path, results: Path, report_path: Path, workers: int, data: Path | None = None) -> Path:
    started = time.monotonic()
    benchmark = Benchmark.load(benchmark_path)
    for suite_name, task, quality in benchmark.instances:
        suite = get_suite(suite_name)
        suite.check_quality(task, quality)
        root = dataset_root(suite_name, task, quality, data)
        if not (root / "meta.json").exists():
            print(f"generating {suite_name}/{task}/{quality} -> {root}", flush=True)
            suite.generate(task, quality, root)
    requests, names, not_applicable = plan_runs(benchmark, results, data)
    print(
        f"{len(requests)} runs of {len(names)} algorithms on {len(benchmark.instances)} datasets, {workers} workers",
        flush=True,
    )
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        for done, run_dir in enumerate(pool.map(_run, requests), start=1):
            if done % 10 == 0 or done == len(requests):
                print(f"  {done}/{len(requests)} runs done (last: {run_dir})", flush=True)
    frame = load_results(results)
    frame = frame[frame["algo"].isin(names) & (frame["variant"] == "default") & (frame["profile"] == benchmark.profile)]
    frame = frame[frame["seed"].isin(benchmark.seeds)]
    table = markdown_table(summarize(frame, benchmark.metric), names, benchmark.instances, not_applicable)
    summary = (
        f"Benchmark file `{benchmark_path}`; mirrors {benchmark.mirrors}. Profile `{benchmark.profile}`, "
        f"seeds {list(benchmark.seeds)}; mean ± std (ddof=0) over seeds of the final score, "
        f"{METRIC_DESCRIPTIONS[benchmark.metric]}. Best mean per row in bold."
    )
    footer = f"{len(requests)} runs; wall time {time.monotonic() - started:.0f} s with {workers} workers."
    report = "\n\n".join([f"# {benchmark.title}", summary, table, footer]) + "\n"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report)
    return report_path


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))

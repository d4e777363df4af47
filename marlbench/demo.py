"""The demo (``make demo``): the grid and report machinery on the matrix games.

``marlbench demo`` is ``marlbench grid benchmarks/demo.yaml`` followed by ``marlbench
report``: every algorithm of the file on its matrix datasets over its seeds, trials in
parallel on a local Ray, then ``reports/demo.md`` with the published matrix-game numbers
beside ours (the report reads the plan the grid wrote beside the results).
"""

from __future__ import annotations

import time
from pathlib import Path

from marlbench.benchmark import Benchmark
from marlbench.grid import GridOptions, run_grid
from marlbench.report.build import write_report
from marlbench.workspace import Workspace


def run_demo(benchmark_path: Path, workspace: Workspace, out: Path, max_concurrent: int | None = None) -> list[Path]:
    started = time.monotonic()
    benchmark = Benchmark.load(benchmark_path)
    summary = run_grid(benchmark, GridOptions(workspace, max_concurrent=max_concurrent))
    written = write_report(benchmark, workspace.profile_results(benchmark.profile), out, formats=("md",), figures=False)
    print(f"demo: {summary.plan.n_trials} runs, {time.monotonic() - started:.0f} s wall time", flush=True)
    return written

"""The demo (``make demo``): the grid and report machinery on the matrix games.

``marlbench demo`` is ``marlbench grid benchmarks/matrix.yaml`` followed by ``marlbench
report``: every algorithm of the file on every matrix dataset over its seeds, trials in
parallel on a local Ray, then ``reports/demo.md`` with the published matrix-game numbers
beside ours.
"""

from __future__ import annotations

import time
from pathlib import Path

from marlbench.benchmark import Benchmark
from marlbench.grid import GridOptions, profile_results, run_grid, write_report


def run_demo(
    benchmark_path: Path, results: Path, out: Path, data: Path | None = None, max_concurrent: int | None = None
) -> list[Path]:
    started = time.monotonic()
    benchmark = Benchmark.load(benchmark_path)
    summary = run_grid(benchmark, GridOptions(results=results, data=data, max_concurrent=max_concurrent))
    written = write_report(
        benchmark, profile_results(results, benchmark.profile), out, data, formats=("md",), figures=False
    )
    print(f"demo: {summary.plan.n_trials} runs, {time.monotonic() - started:.0f} s wall time", flush=True)
    return written

"""The demo machinery end to end on a small benchmark file: datasets generated, runs in
parallel worker processes, a markdown table with every algorithm and dataset."""

from __future__ import annotations

from pathlib import Path

from marlbench.algorithm import all_algorithms, get_algorithm
from marlbench.benchmark import Benchmark
from marlbench.demo import plan_runs, run_demo
from marlbench.envs.registry import get_suite

REPOSITORY = Path(__file__).resolve().parent.parent


def test_demo_writes_a_table_of_every_algorithm_and_dataset(tmp_path):
    benchmark_file = tmp_path / "mini.yaml"
    benchmark_file.write_text(
        "name: mini\ntitle: Mini demo\nmirrors: InSPO Table 1\nprofile: smoke\nmetric: expected_return\n"
        "algorithms: [bc]\nseeds: [0, 1]\ninstances:\n  - matrix/xor/aa-ab-ba\n  - matrix/bandit/gmm\n"
    )
    report = run_demo(benchmark_file, tmp_path / "results", tmp_path / "reports" / "demo.md", workers=2)
    text = report.read_text()
    assert text.startswith("# Mini demo")
    header = next(line for line in text.splitlines() if line.startswith("| dataset |"))
    assert "bc" in header
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line
    }
    assert "xor/aa-ab-ba" in rows and "bandit/gmm" in rows
    assert "±" in rows["xor/aa-ab-ba"] and "±" in rows["bandit/gmm"]
    assert "4 runs" in text
    assert len(list((tmp_path / "results").rglob("result.json"))) == 4


def test_registered_means_every_algorithm_that_supports_the_action_space(tmp_path):
    benchmark_file = tmp_path / "all.yaml"
    benchmark_file.write_text(
        "name: all\nprofile: smoke\nmetric: return_mean\nalgorithms: registered\nseeds: [0, 1]\n"
        "instances:\n  - matrix/xor/ab\n  - matrix/bandit/gmm\n"
    )
    requests, names, not_applicable = plan_runs(Benchmark.load(benchmark_file), tmp_path / "results", None)
    assert names == list(all_algorithms())
    for name in names:
        for instance in (("matrix", "xor", "ab"), ("matrix", "bandit", "gmm")):
            runs = [r for r in requests if r.algo == name and (r.suite, r.task, r.quality) == instance]
            supported = get_suite("matrix").task(instance[1]).spec.action_type in get_algorithm(name).action_types
            assert len(runs) == (2 if supported else 0)
            assert ((name, instance) in not_applicable) == (not supported)


def test_the_shipped_demo_file_covers_every_matrix_dataset():
    benchmark = Benchmark.load(REPOSITORY / "benchmarks" / "matrix.yaml")
    suite = get_suite("matrix")
    expected = {("matrix", task, quality) for task, info in suite.tasks().items() for quality in info.qualities}
    assert set(benchmark.instances) == expected
    assert benchmark.seeds == (0, 1, 2, 3, 4) and benchmark.algorithms is None

"""The demo's benchmark file and how a file's algorithm list becomes grid cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from marlbench.algorithm import all_algorithms, get_algorithm
from marlbench.benchmark import Benchmark
from marlbench.grid import plan_grid
from marlbench.suites import get_suite
from marlbench.train import train

REPOSITORY = Path(__file__).resolve().parent.parent


def test_registered_means_every_algorithm_that_supports_the_action_space(tmp_path):
    benchmark_file = tmp_path / "all.yaml"
    benchmark_file.write_text(
        "name: all\nprofile: smoke\nmetric: return_mean\nalgorithms: registered\nseeds: [0, 1]\n"
        "instances:\n  - matrix/xor/ab\n  - matrix/bandit/gmm\n"
    )
    plan = plan_grid(Benchmark.load(benchmark_file), tmp_path / "data")
    cells = {(trial.algo, trial.instance) for trial in plan.cells}
    for name in all_algorithms():
        for instance in (("matrix", "xor", "ab"), ("matrix", "bandit", "gmm")):
            supported = get_suite("matrix").task(instance[1]).spec.action_type in get_algorithm(name).action_types
            assert ((name, instance) in cells) == supported
            assert (plan.cell_status.get((name, instance)) == "n/a") == (not supported)
    assert plan.n_trials == 2 * len(cells)
    assert set(plan.to_generate) == {("matrix", "xor", "ab"), ("matrix", "bandit", "gmm")}


def test_the_shipped_matrix_file_covers_every_matrix_dataset_and_every_algorithm():
    benchmark = Benchmark.load(REPOSITORY / "benchmarks" / "matrix.yaml")
    suite = get_suite("matrix")
    expected = {("matrix", task, quality) for task, info in suite.tasks().items() for quality in info.qualities}
    assert set(benchmark.instances) == expected
    assert benchmark.algorithms is None, "algorithms: all (every registered algorithm), so a new one needs no edit"


def test_the_demo_file_is_a_subset_of_the_matrix_file_with_every_algorithm():
    demo = Benchmark.load(REPOSITORY / "benchmarks" / "demo.yaml")
    matrix = Benchmark.load(REPOSITORY / "benchmarks" / "matrix.yaml")
    assert demo.name == "demo" and set(demo.instances) < set(matrix.instances)
    assert demo.algorithms == matrix.algorithms and demo.profile == matrix.profile


DEMO_XOR = ("matrix", "xor", "aa-ab-ba")


@pytest.mark.parametrize("algo", ["alberdice", "inspo"])
def test_alberdice_and_inspo_reach_the_published_xor_optimum_on_every_demo_seed(make_request, algo):
    """InSPO Table 1 prints 1.00 for both on XOR {AA, AB, BA}; the demo's cell must show it."""
    demo = Benchmark.load(REPOSITORY / "benchmarks" / "demo.yaml")
    assert DEMO_XOR in demo.instances
    for seed in demo.seeds:
        request = make_request(algo=algo, task=DEMO_XOR[1], quality=DEMO_XOR[2], seed=seed, profile=demo.profile)
        final = train(request).result["final"]
        assert final["expected_return"] >= 0.95, (algo, seed, final)

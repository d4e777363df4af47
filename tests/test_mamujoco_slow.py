"""Slow learning check (run by hand: pytest -m slow): BC on a generated Hopper `expert` dataset
reaches at least 80% of the dataset's mean episode return."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium_robotics")

from marlbench.data.store import Dataset  # noqa: E402
from marlbench.suites import get_suite  # noqa: E402
from marlbench.train import RunRequest, train  # noqa: E402

BUDGET = int(os.environ.get("MARLBENCH_SLOW_BUDGET", "20000"))


@pytest.mark.slow
@pytest.mark.timeout(10800)
def test_bc_recovers_the_expert_return_on_hopper(tmp_path):
    root = tmp_path / "data" / "mamujoco" / "hopper" / "expert"
    get_suite("mamujoco").generate("hopper", "expert", root, seed=0, budget=BUDGET, episodes=100)
    dataset_return = Dataset.open(root).meta["statistics"]["return_mean"]
    request = RunRequest(
        algo="bc", suite="mamujoco", task="hopper", quality="expert", seed=0, profile="standard",
        steps=20_000, data=tmp_path / "data", results=tmp_path / "results", progress=False,
    )  # fmt: skip
    final = train(request).result["final"]
    print(f"dataset mean return {dataset_return:.1f}, BC evaluation return {final['return_mean']:.1f}")
    assert final["return_mean"] >= 0.8 * dataset_return

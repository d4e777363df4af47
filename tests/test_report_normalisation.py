"""The aggregate normalises against fixed references per instance (the dataset card's random and
expert returns, a matrix game's payoff range, the win rate as it is), so a column's score does not
change when another column is added; without references it falls back to the column range and says
so. The generators record the references, and a run carries them into its result file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_report import EXPERT, MEDIUM, make_benchmark, write_run

from marlbench.report.aggregate import aggregate_scores
from marlbench.report.build import build_report, report_columns, select_runs
from marlbench.report.results import load_results
from marlbench.suites.matrix import MatrixSuite
from marlbench.suites.matrix.bridge import HORIZON, BridgeEnv, reference_returns
from marlbench.train import train

XOR = ("matrix", "xor", "ab")
SMAC = ("smacv1", "5m_vs_6m", "good")
HOPPER_REFERENCES = {"random": 0.0, "expert": 10.0}


def _aggregate(results: Path, benchmark, metric: str = "return_mean"):
    columns = report_columns(benchmark, load_results(results), {})
    runs = select_runs(load_results(results), benchmark, columns)
    return aggregate_scores(runs, metric, columns, benchmark.instances), columns


def test_a_column_keeps_its_score_when_another_is_added(tmp_path: Path) -> None:
    """bc: medium {2, 4}, expert {6, 8} against random 0 and expert 10 -> 0.2 0.4 0.6 0.8,
    IQM of the middle half 0.5, mean 0.5; whatever comadice scores."""
    results = tmp_path / "results"
    for seed, (medium, expert) in enumerate([(2.0, 6.0), (4.0, 8.0)]):
        write_run(results, MEDIUM, "bc", seed, medium, references=HOPPER_REFERENCES)
        write_run(results, EXPERT, "bc", seed, expert, references=HOPPER_REFERENCES)
        write_run(results, MEDIUM, "comadice", seed, 9.0 + seed, references=HOPPER_REFERENCES)
        write_run(results, EXPERT, "comadice", seed, 1.0, references=HOPPER_REFERENCES)
    alone, (bc,) = _aggregate(results, make_benchmark(algorithms=("bc",), seeds=(0, 1)))
    both, _ = _aggregate(results, make_benchmark(algorithms=("bc", "comadice"), seeds=(0, 1)))
    np.testing.assert_allclose(alone.normalised[bc], [[0.2, 0.6], [0.4, 0.8]])
    np.testing.assert_allclose(both.normalised[bc], alone.normalised[bc])
    assert alone.iqm[bc].value == pytest.approx(0.5) and both.iqm[bc] == alone.iqm[bc]
    assert {n.kind for n in both.normalisation.values()} == {"random-expert"}


def test_payoff_range_and_win_rate(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, XOR, "bc", seed, 1.0 - seed, references={"min": -2.0, "max": 1.0})
        write_run(results, SMAC, "bc", seed, 5.0, win_rate=0.25 * seed)
    xor, (bc,) = _aggregate(results, make_benchmark(instances=(XOR,), algorithms=("bc",), seeds=(0, 1)))
    np.testing.assert_allclose(xor.normalised[bc][:, 0], [1.0, 2.0 / 3.0])
    assert xor.normalisation[XOR].kind == "payoff-range"
    smac, (bc,) = _aggregate(
        results, make_benchmark(instances=(SMAC,), algorithms=("bc",), seeds=(0, 1)), metric="win_rate"
    )
    np.testing.assert_allclose(smac.normalised[bc][:, 0], [0.0, 0.25])  # one column: still normalised
    assert smac.normalisation[SMAC].kind == "win-rate"


def test_old_results_fall_back_to_the_column_range_and_say_so(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_run(results, MEDIUM, "bc", seed, 5.0 + seed, references=HOPPER_REFERENCES)
        write_run(results, MEDIUM, "comadice", seed, 7.0 + seed, references=HOPPER_REFERENCES)
        write_run(results, EXPERT, "bc", seed, 1.0 + seed)
        write_run(results, EXPERT, "comadice", seed, 3.0 + seed)
    other = {"random": 0.0, "expert": 20.0}
    ant = ("mamujoco", "ant", "expert")
    for seed in range(2):
        write_run(results, ant, "bc", seed, 1.0 + seed, references=HOPPER_REFERENCES)
        write_run(results, ant, "comadice", seed, 3.0 + seed, references=other)
    benchmark = make_benchmark(instances=(MEDIUM, EXPERT, ant), seeds=(0, 1))
    aggregate, (bc, _) = _aggregate(results, benchmark)
    np.testing.assert_allclose(aggregate.normalised[bc], [[0.5, -0.25, -0.25], [0.6, 0.25, 0.25]])
    assert aggregate.normalisation[EXPERT].reason == "no references on the dataset card"
    assert aggregate.normalisation[ant].reason == "the runs' dataset cards give different references"
    build_report(benchmark, results, tmp_path / "reports", formats=("md",), figures=False)
    text = (tmp_path / "reports" / "tiny.md").read_text()
    assert (
        "Scores normalised per instance against fixed references, as D4RL's normalised score: (score − random) / "
        "(expert − random) with the random-policy and behaviour-expert returns recorded on the dataset card "
        "(1 instance). Without references, min-max over the compared columns' mean scores (best column mean 1, "
        "worst 0) on mamujoco/hopper/expert (no references on the dataset card); mamujoco/ant/expert (the runs' "
        "dataset cards give different references): these scores change when a column is added or removed."
    ) in text


def test_matrix_cards_record_the_payoff_range_and_bridge_its_exact_returns(tmp_path: Path) -> None:
    suite = MatrixSuite()
    cards = {
        task: suite.generate(task, quality, tmp_path / task, episodes=episodes).meta["source"]["reference_returns"]
        for task, quality, episodes in (("xor", "ab", 2), ("mne", "uniform", 9), ("bandit", "gmm", 10))
    }
    assert cards == {
        "xor": {"min": -2.0, "max": 1.0},
        "mne": {"min": 0.0, "max": 20.0},
        "bandit": {"min": -1.0, "max": 1.0},
    }
    bridge = suite.generate("bridge", "optimal", tmp_path / "bridge", episodes=2)
    assert bridge.meta["source"]["reference_returns"] == reference_returns()
    assert reference_returns()["expert"] == pytest.approx(bridge.meta["statistics"]["return_mean"], abs=1e-5)
    episodes = 4000
    env = BridgeEnv(episodes)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, finished = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    for _ in range(HORIZON):
        *_, reward, done, _ = env.step(rng.integers(0, 5, size=(episodes, 2)))
        total += np.where(finished, 0.0, reward)
        finished |= done
    error = total.std() / np.sqrt(episodes)
    assert abs(total.mean() - reference_returns()["random"]) < 4 * error


def test_a_run_carries_the_card_references_into_its_result(tmp_path: Path, make_request) -> None:
    outcome = train(make_request(task="xor", quality="ab", profile="smoke", steps=20))
    result = json.loads((outcome.run_dir / "result.json").read_text())
    assert result["config"]["dataset"]["source"]["reference_returns"] == {"min": -2.0, "max": 1.0}
    frame = load_results(tmp_path / "results")
    assert frame[["reference_kind", "reference_low", "reference_high"]].values.tolist() == [["payoff-range", -2, 1]]


def test_mamujoco_cards_record_random_and_expert_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The behaviour cache is replaced by a stub (no SAC training); the random return is a real,
    seeded rollout of uniform actions on Hopper."""
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("gymnasium_robotics")
    from marlbench.suites.mamujoco import generate as gen
    from marlbench.suites.mamujoco.tasks import TASKS

    task = TASKS["hopper"]
    random_return = gen.random_policy_return(task, seed=3)
    assert random_return == gen.random_policy_return(task, seed=3)
    assert random_return != gen.random_policy_return(task, seed=4)
    assert 0.0 < random_return < 100.0  # a few healthy steps before falling, under v4's rewards
    manifest = {"checkpoints": [{"step": 500, "return_mean": 40.0}, {"step": 1000, "return_mean": 321.5}]}
    rng = np.random.default_rng(0)
    episode = gen.Episode(
        obs=rng.normal(size=(6, task.single_agent_obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(5, task.n_agents * task.action_dim)).astype(np.float32),
        reward=np.ones(5),
        terminated=True,
    )
    monkeypatch.setattr(gen, "behaviour_cache", lambda *args: manifest)
    monkeypatch.setattr(gen, "online_episodes", lambda work_dir, until: [episode])
    dataset = gen.generate_mamujoco_dataset(task, "medium-replay", tmp_path / "medium-replay", seed=3, budget=1000)
    assert dataset.meta["source"]["reference_returns"] == {"random": random_return, "expert": 321.5}

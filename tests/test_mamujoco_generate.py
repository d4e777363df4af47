"""MaMuJoCo dataset generation: a tiny SAC run on Hopper, all four qualities from one cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium_robotics")

from marlbench.algorithm import all_algorithms, get_algorithm, resolve_config  # noqa: E402
from marlbench.data.store import Dataset  # noqa: E402
from marlbench.errors import ConfigError  # noqa: E402
from marlbench.suites.mamujoco import generate as gen  # noqa: E402
from marlbench.suites.mamujoco.tasks import QUALITIES, TASKS, paper_observations  # noqa: E402
from marlbench.train import RunRequest, train  # noqa: E402

BUDGET = 1500
EPISODES = 3
SEED = 0
TASK = TASKS["hopper"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = tmp_path_factory.mktemp("data") / "mamujoco" / "hopper"
    trainings: list[tuple] = []
    real_train = gen._train_behaviour

    def counting_train(*args, **kwargs):
        trainings.append(args)
        return real_train(*args, **kwargs)

    threads_before = torch.get_num_threads()
    numpy_state_before = np.random.get_state()[1].copy()
    torch_state_before = torch.random.get_rng_state().clone()
    datasets: dict[str, Dataset] = {}
    manifest_mtime = None
    work_dir = gen.default_work_dir(data / "expert", SEED, BUDGET)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gen, "_train_behaviour", counting_train)
        for quality in QUALITIES:
            datasets[quality] = gen.generate_mamujoco_dataset(
                TASK, quality, data / quality, seed=SEED, budget=BUDGET, episodes=EPISODES
            )
            if manifest_mtime is None:
                manifest_mtime = (work_dir / gen.MANIFEST).stat().st_mtime_ns
    return {
        "data": data,
        "datasets": datasets,
        "work_dir": work_dir,
        "trainings": trainings,
        "manifest_mtime": manifest_mtime,
        "manifest": gen.behaviour_cache(TASK, SEED, BUDGET, work_dir),
        "threads_changed": torch.get_num_threads() != threads_before,
        "numpy_rng_changed": not np.array_equal(np.random.get_state()[1], numpy_state_before),
        "torch_rng_changed": not torch.equal(torch.random.get_rng_state(), torch_state_before),
    }


def _global_actions(ma_env, local: np.ndarray) -> np.ndarray:
    """``[T, N, A]`` per-agent actions -> ``[T, N*A]`` through gymnasium-robotics' own inverse."""
    agents = ma_env.possible_agents
    return np.stack(
        [ma_env.map_local_actions_to_global_action({a: row[i] for i, a in enumerate(agents)}) for row in local]
    )


def _episode(dataset: Dataset, number: int) -> dict[str, np.ndarray]:
    starts = np.append(dataset.fields["episode_start"], dataset.n_rows)
    rows = slice(int(starts[number]), int(starts[number + 1]))
    return {name: np.asarray(dataset.fields[name][rows]) for name in ("obs", "state", "actions", "reward", "terminal")}


def test_every_quality_is_a_valid_paper_mode_dataset(generated):
    for quality, dataset in generated["datasets"].items():
        reopened = Dataset.open(dataset.root)
        reopened.verify()
        assert reopened.identity == f"mamujoco/hopper/{quality}"
        assert (reopened.spec.n_agents, reopened.spec.obs_dim, reopened.spec.state_dim) == (3, 14, 42)
        assert reopened.spec.action_dim == 1 and reopened.spec.episode_limit == 1000
        actions = np.asarray(reopened.fields["actions"])
        assert actions.shape[1:] == (3, 1) and np.abs(actions).max() <= 1.0
        assert reopened.meta["env_options"] == {"observation_mode": "paper"}
        source = reopened.meta["source"]
        assert source["generator"] == gen.GENERATOR
        assert source["config"]["budget"] == BUDGET and source["config"]["gym_id"] == "Hopper-v4"
        behaviour = source["behaviour"]
        assert behaviour["algorithm"] == "stable-baselines3 SAC" and behaviour["training_steps"] == BUDGET
        assert behaviour["expert_return"] == generated["manifest"]["checkpoints"][-1]["return_mean"]
        # the paper observation: whole single-agent observation + one-hot id, standardised per vector
        obs = np.asarray(reopened.fields["obs"])
        np.testing.assert_allclose(obs.mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(reopened.fields["state"]), obs.reshape(obs.shape[0], -1))


def test_behaviour_policy_is_trained_once_and_reused(generated):
    assert len(generated["trainings"]) == 1
    work_dir = generated["work_dir"]
    assert (work_dir / gen.MANIFEST).stat().st_mtime_ns == generated["manifest_mtime"]
    manifest = generated["manifest"]
    assert [c["step"] for c in manifest["checkpoints"]] == gen.checkpoint_steps(BUDGET)
    assert manifest["checkpoints"][-1]["step"] == BUDGET
    for checkpoint in manifest["checkpoints"]:
        assert (work_dir / checkpoint["file"]).is_file() and np.isfinite(checkpoint["return_mean"])
    assert manifest["key"]["learning_starts"] == BUDGET // 5
    # the generator leaves global settings as it found them
    assert not generated["threads_changed"]
    assert not generated["numpy_rng_changed"] and not generated["torch_rng_changed"]


def test_cache_of_another_task_is_refused(generated):
    with pytest.raises(ConfigError, match="holds a behaviour policy"):
        gen.behaviour_cache(TASKS["ant"], SEED, BUDGET, generated["work_dir"])


def test_expert_and_medium_come_from_the_chosen_checkpoints(generated):
    manifest = generated["manifest"]
    expert, medium = generated["datasets"]["expert"], generated["datasets"]["medium"]
    assert expert.n_episodes == medium.n_episodes == EPISODES
    assert expert.meta["source"]["behaviour"]["checkpoint_step"] == BUDGET
    chosen = medium.meta["source"]["behaviour"]["checkpoint_step"]
    candidates = manifest["checkpoints"][:-1]
    target = gen.MEDIUM_FRACTION * manifest["checkpoints"][-1]["return_mean"]
    best = min(abs(c["return_mean"] - target) for c in candidates)
    assert chosen < BUDGET
    assert abs(next(c for c in candidates if c["step"] == chosen)["return_mean"] - target) == best


def test_medium_expert_holds_the_medium_then_the_expert_episodes(generated):
    datasets = generated["datasets"]
    mixed = datasets["medium-expert"]
    assert mixed.n_episodes == 2 * EPISODES
    assert mixed.meta["source"]["behaviour"]["parts"] == {"medium": EPISODES, "expert": EPISODES}
    for number in range(2 * EPISODES):
        part, index = ("medium", number) if number < EPISODES else ("expert", number - EPISODES)
        ours, theirs = _episode(mixed, number), _episode(datasets[part], index)
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name])
    returns = mixed.episode_returns()
    np.testing.assert_allclose(returns[:EPISODES], datasets["medium"].episode_returns())
    np.testing.assert_allclose(returns[EPISODES:], datasets["expert"].episode_returns())


def test_medium_replay_is_the_online_experience_up_to_the_medium_checkpoint(generated):
    replay = generated["datasets"]["medium-replay"]
    until = generated["datasets"]["medium"].meta["source"]["behaviour"]["checkpoint_step"]
    assert replay.meta["source"]["behaviour"]["checkpoint_step"] == until
    experience = np.load(generated["work_dir"] / gen.EXPERIENCE)
    done = (experience["terminated"] | experience["truncated"])[:until]
    # every episode that started before the checkpoint; the one running there is cut
    assert replay.n_episodes == 1 + int(done[:-1].sum())
    assert replay.n_transitions == until
    valid = np.asarray(replay.fields["valid"])
    np.testing.assert_allclose(np.asarray(replay.fields["reward"])[valid], experience["reward"][:until], rtol=1e-6)
    assert np.asarray(replay.fields["terminal"]).sum() == experience["terminated"][:until].sum()
    ma_env = gen.make_multiagent_env(TASK)
    global_actions = _global_actions(ma_env, np.asarray(replay.fields["actions"])[valid])
    np.testing.assert_array_equal(global_actions, np.clip(experience["actions"][:until], -1, 1))
    obs, _ = paper_observations(experience["obs"][:until], TASK.n_agents)
    np.testing.assert_array_equal(np.asarray(replay.fields["obs"])[valid], obs)


def _resimulate(dataset: Dataset, number: int, reset_seed: int) -> None:
    """Step the Gym task with the dataset's actions (joined back by gymnasium-robotics) and
    compare rewards, terminals and observations with the dataset's."""
    episode = _episode(dataset, number)
    env = gen.make_gym_env(TASK)
    ma_env = gen.make_multiagent_env(TASK)
    first, _ = env.reset(seed=reset_seed)
    observations, rewards, terminated = [np.asarray(first, np.float32)], [], False
    for action in _global_actions(ma_env, episode["actions"][:-1]):
        next_obs, reward, terminated, truncated, _ = env.step(action.astype(np.float32))
        observations.append(np.asarray(next_obs, np.float32))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert len(rewards) == len(episode["reward"]) - 1
    np.testing.assert_allclose(episode["reward"][:-1], rewards, rtol=1e-6, atol=1e-6)
    assert bool(episode["terminal"][-2]) == terminated
    expected_obs, _ = paper_observations(np.stack(observations), TASK.n_agents)
    np.testing.assert_allclose(episode["obs"], expected_obs, atol=1e-5)


def test_rollout_rewards_are_the_gym_rewards(generated):
    expert = generated["datasets"]["expert"]
    for number in range(EPISODES):
        _resimulate(expert, number, gen.episode_reset_seed(SEED, "expert", number))
    medium = generated["datasets"]["medium"]
    _resimulate(medium, 0, gen.episode_reset_seed(SEED, "medium", 0))


def test_first_training_episode_replays_in_gym(generated):
    # SB3 resets the training environment with seed=SEED before its first episode
    _resimulate(generated["datasets"]["medium-replay"], 0, SEED)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_action_split_inverts_through_gymnasium_robotics(name):
    task = TASKS[name]
    ma_env = gen.make_multiagent_env(task)
    index = gen.action_index_map(task, ma_env)
    assert index.shape == (task.n_agents, task.action_dim)
    global_actions = np.random.default_rng(1).uniform(-1, 1, (5, task.n_agents * task.action_dim))
    local = global_actions[:, index]
    np.testing.assert_array_equal(_global_actions(ma_env, local), global_actions)
    for row in range(5):
        expected = ma_env.map_global_action_to_local_actions(global_actions[row])
        for i, agent in enumerate(ma_env.possible_agents):
            np.testing.assert_array_equal(local[row, i], expected[agent])


def test_bad_requests_fail_before_any_work(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown MaMuJoCo quality"):
        gen.generate_mamujoco_dataset(TASK, "good", tmp_path / "x", budget=BUDGET)
    with pytest.raises(ConfigError, match="budget"):
        gen.generate_mamujoco_dataset(TASK, "expert", tmp_path / "x", budget=10)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "leftover.npy").write_bytes(b"")
    with pytest.raises(FileExistsError):
        gen.generate_mamujoco_dataset(TASK, "expert", tmp_path / "taken", budget=BUDGET)
    assert not (tmp_path / "_behaviour").exists()


CONTINUOUS_ALGORITHMS = sorted(name for name, cls in all_algorithms().items() if "continuous" in cls.action_types)


@pytest.mark.parametrize("algo", CONTINUOUS_ALGORITHMS)
def test_algorithm_runs_end_to_end_on_a_generated_dataset(generated, tmp_path, algo):
    """`marlbench run --algo ALGO --suite mamujoco --profile smoke` on generated data: trains
    through every phase of the algorithm (the phase names in metrics.jsonl), evaluates in the
    real environment (paper observation mode from the dataset's env_options), writes a result."""
    request = RunRequest(
        algo=algo,
        suite="mamujoco",
        task="hopper",
        quality="medium-replay",
        seed=0,
        profile="smoke",
        data=generated["data"].parent.parent,
        results=tmp_path / "results",
        progress=False,
    )
    outcome = train(request)
    result = outcome.result
    assert result["status"] == "completed"
    config = resolve_config(get_algorithm(algo), "mamujoco", "hopper", "medium-replay", {}, total_steps=50)
    phases = set(get_algorithm(algo)(TASK.paper_spec, config, torch.device("cpu")).phase_starts())
    lines = [json.loads(line) for line in (outcome.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {line["phase"] for line in lines if line["kind"] == "train"} == phases
    assert result["config"]["runtime"]["dataset_path"] == str(generated["data"] / "medium-replay")
    final = result["final"]
    assert final["episodes"] == 2 and np.isfinite(final["return_mean"]) and final["win_rate"] is None
    assert "expected_return" not in final

"""The MaMuJoCo environments: paper and local observations, seeding, finished episodes, workers, the suite."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics", reason="MaMuJoCo needs gymnasium-robotics: pip install -e '.[mamujoco]'")
pytest.importorskip("mujoco", reason="MaMuJoCo needs mujoco: pip install -e '.[mamujoco]'")

from marlbench.errors import ConfigError, UnknownNameError  # noqa: E402
from marlbench.suites import get_suite  # noqa: E402
from marlbench.suites.mamujoco import MaMuJoCoSuite  # noqa: E402
from marlbench.suites.mamujoco.env import MaMuJoCoEnv, _make_parallel_env, default_workers  # noqa: E402
from marlbench.suites.mamujoco.tasks import QUALITIES, TASKS, paper_observations  # noqa: E402

PAPER_DIMS = {"hopper": (14, 42), "halfcheetah": (23, 138), "ant": (113, 226)}
LOCAL_DIMS = {"hopper": (9, 11), "halfcheetah": (9, 17), "ant": (63, 111)}


def random_actions(env: MaMuJoCoEnv, steps: int, seed: int = 0) -> np.ndarray:
    shape = (steps, env.n_envs, env.spec.n_agents, env.spec.action_dim)
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


def rollout(env: MaMuJoCoEnv, seed: int, actions: np.ndarray) -> list[np.ndarray]:
    """Every array the env returned, in order."""
    obs, state, _ = env.reset(seed)
    arrays = [obs, state]
    for step_actions in actions:
        obs, state, avail, reward, done, info = env.step(step_actions)
        assert avail is None
        arrays += [obs, state, reward, done, info["terminated"], info["truncated"]]
    return arrays


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("task", sorted(PAPER_DIMS))
def test_paper_mode_dims_standardised_vectors_and_one_hot_ids(task):
    env = MaMuJoCoEnv(task, 2, n_workers=0)
    assert env.spec == TASKS[task].paper_spec
    obs_dim, state_dim = PAPER_DIMS[task]
    n, d = env.spec.n_agents, TASKS[task].single_agent_obs_dim
    obs, state, avail = env.reset(0)
    for _ in range(2):
        assert avail is None
        assert obs.shape == (2, n, obs_dim) and state.shape == (2, state_dim)
        assert obs.dtype == np.float32 and state.dtype == np.float32
        np.testing.assert_allclose(obs.mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(obs.std(-1), 1.0, atol=1e-4)
        np.testing.assert_array_equal(state, obs.reshape(2, -1))  # state = agents' obs concatenated
        ids = obs[:, :, d:]  # the standardised one-hot id: agent i's largest entry is i, the rest equal
        np.testing.assert_array_equal(ids.argmax(-1), np.broadcast_to(np.arange(n), (2, n)))
        off = ids[:, ~np.eye(n, dtype=bool)].reshape(2, n, n - 1)
        np.testing.assert_allclose(off, off[..., :1].repeat(n - 1, -1))
        # every agent sees the same single-agent observation
        np.testing.assert_array_equal(obs[:, :, :d], np.broadcast_to(obs[:, :1, :d], obs[:, :, :d].shape))
        obs, state, avail = env.step(random_actions(env, 1)[0])[:3]
    env.close()


def test_paper_and_local_mode_match_gymnasium_robotics_parallel_env():
    """Stepping the single-agent env underneath gives what ``parallel_env.step`` gives."""
    task, steps = TASKS["hopper"], 40
    paper, local = (
        MaMuJoCoEnv("hopper", 1, n_workers=0),
        MaMuJoCoEnv("hopper", 1, observation_mode="local", n_workers=0),
    )
    reference = _make_parallel_env(task)
    seed = paper.episode_seeds(5)[0]
    actions = random_actions(paper, steps, seed=1)
    obs, state, _ = paper.reset(5)
    local_obs, local_state, _ = local.reset(5)
    ref_obs, _ = reference.reset(seed=seed)
    for t in range(steps + 1):
        single = reference.state()
        expected_obs, expected_state = paper_observations(single[None], task.n_agents)
        np.testing.assert_array_equal(obs, expected_obs)
        np.testing.assert_array_equal(state, expected_state)
        np.testing.assert_array_equal(local_state[0], single.astype(np.float32))
        for i, agent in enumerate(reference.possible_agents):
            dim = len(ref_obs[agent])
            np.testing.assert_array_equal(local_obs[0, i, :dim], ref_obs[agent].astype(np.float32))
            assert not local_obs[0, i, dim:].any()
        if t == steps:
            break
        joint = {agent: actions[t, 0, i] for i, agent in enumerate(reference.possible_agents)}
        ref_obs, ref_reward, ref_term, ref_trunc, _ = reference.step(joint)
        obs, state, _, reward, done, info = paper.step(actions[t])
        local_obs, local_state, _, local_reward, _, _ = local.step(actions[t])
        assert reward[0] == np.float32(ref_reward["agent_0"]) == local_reward[0]
        assert done[0] == (ref_term["agent_0"] or ref_trunc["agent_0"]) and info["terminated"][0] == ref_term["agent_0"]
        if done[0]:
            break
    paper.close()
    local.close()


@pytest.mark.parametrize("task", sorted(LOCAL_DIMS))
def test_local_mode_dims(task):
    env = MaMuJoCoEnv(task, 2, observation_mode="local", n_workers=0)
    obs_dim, state_dim = LOCAL_DIMS[task]
    assert (env.spec.obs_dim, env.spec.state_dim, env.spec.n_agents) == (obs_dim, state_dim, TASKS[task].n_agents)
    assert env.spec.action_dim == TASKS[task].action_dim and env.spec.episode_limit == 1000
    obs, state, _ = env.reset(0)
    assert obs.shape == (2, TASKS[task].n_agents, obs_dim) and state.shape == (2, state_dim)
    obs, state = env.step(random_actions(env, 1)[0])[:2]
    assert obs.shape == (2, TASKS[task].n_agents, obs_dim) and state.shape == (2, state_dim)
    env.close()


def test_same_seed_same_trajectories_different_seed_differs():
    env = MaMuJoCoEnv("hopper", 3, n_workers=0)
    actions = random_actions(env, 30)
    first, again, other = rollout(env, 7, actions), rollout(env, 7, actions), rollout(env, 8, actions)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])  # different initial states
    assert not np.array_equal(first[-6], other[-6])
    assert not np.array_equal(first[0][0], first[0][1])  # episodes of one batch differ too
    env.close()


def test_finished_episodes_stay_finished_while_others_continue():
    env = MaMuJoCoEnv("hopper", 2, n_workers=0, max_steps=50)
    assert env.spec.episode_limit == 50
    env.reset(0)
    actions = np.zeros((2, 3, 1), dtype=np.float32)
    actions[0] = -1.0  # this hopper falls within a few steps; the other stands still
    ended_at, last_obs = None, None
    for t in range(1, 51):
        obs, state, _, reward, done, info = env.step(actions)
        if ended_at is None and done[0]:
            ended_at, last_obs = t, obs[0].copy()
            assert info["terminated"][0] and not info["truncated"][0]
        elif ended_at is not None:
            assert done[0] and reward[0] == 0.0
            np.testing.assert_array_equal(obs[0], last_obs)  # the finished episode no longer moves
        if t < 50:
            assert not done[1] and reward[1] != 0.0
    assert ended_at is not None and ended_at < 20
    assert done[1] and info["truncated"][1] and not info["terminated"][1]
    env.close()


def test_workers_give_the_in_process_results_and_close_leaves_no_processes():
    in_process = MaMuJoCoEnv("hopper", 5, n_workers=0)
    actions = random_actions(in_process, 60)
    expected = rollout(in_process, 3, actions)
    in_process.close()
    env = MaMuJoCoEnv("hopper", 5, n_workers=2)
    pids = env.worker_pids
    assert len(pids) == 2 and not any(process_gone(pid) for pid in pids)
    for a, b in zip(expected, rollout(env, 3, actions), strict=True):
        np.testing.assert_array_equal(a, b)
    env.close()
    env.close()  # twice is fine
    assert all(process_gone(pid) for pid in pids) and env.worker_pids == []
    assert multiprocessing.active_children() == []
    with pytest.raises(RuntimeError, match="closed"):
        env.reset(0)


def test_local_mode_in_workers_matches_in_process():
    envs = [MaMuJoCoEnv("halfcheetah", 3, observation_mode="local", n_workers=n) for n in (0, 2)]
    actions = random_actions(envs[0], 10)
    for a, b in zip(rollout(envs[0], 0, actions), rollout(envs[1], 0, actions), strict=True):
        np.testing.assert_array_equal(a, b)
    for env in envs:
        env.close()


def test_garbage_collection_stops_workers():
    env = MaMuJoCoEnv("hopper", 8)  # 8 episodes: workers by default on a multi-core machine
    pids = env.worker_pids
    assert len(pids) == default_workers(8)
    del env
    gc.collect()
    assert all(process_gone(pid) for pid in pids)


def test_a_dead_worker_is_reported():
    env = MaMuJoCoEnv("hopper", 4, n_workers=2)
    env.reset(0)
    os.kill(env.worker_pids[1], signal.SIGKILL)
    with pytest.raises(RuntimeError, match="worker 1 exited"):
        env.step(np.zeros((4, 3, 1), dtype=np.float32))
    env.close()
    assert env.worker_pids == []


def test_bad_actions_and_step_before_reset():
    env = MaMuJoCoEnv("hopper", 2, n_workers=0)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.zeros((2, 3, 1)))
    env.reset(0)
    with pytest.raises(ValueError, match=r"\(2, 3, 1\)"):
        env.step(np.zeros((2, 3)))
    env.close()


def test_creation_is_quiet(capfd, tmp_path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = MaMuJoCoEnv("halfcheetah", 1, n_workers=0)
        env.reset(0)
        env.step(np.zeros((1, 6, 1), dtype=np.float32))
    env.close()
    assert [str(w.message) for w in caught] == []
    assert "settotalmass" not in capfd.readouterr().err
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # the tests run in tmp_path


def test_suite_is_registered_with_tasks_profiles_and_options():
    suite = get_suite("mamujoco")
    assert isinstance(suite, MaMuJoCoSuite)
    assert suite.unavailable_reason() is None
    assert "pip install -e '.[mamujoco]'" in suite.requirements
    tasks = suite.tasks()
    assert sorted(tasks) == ["ant", "halfcheetah", "hopper"]
    for name, info in tasks.items():
        assert info.spec == TASKS[name].paper_spec and info.qualities == QUALITIES
        assert all(suite.can_generate(name, quality) for quality in QUALITIES)
    paper = suite.profile("paper")
    assert paper.steps // paper.eval_every == 100 and paper.eval_episodes == 32
    assert suite.profile("smoke").eval_episodes == 2 and suite.profile("smoke").batch_size == 64
    env = suite.make_env("hopper", 2, observation_mode="paper")
    assert env.spec == TASKS["hopper"].paper_spec and env.worker_pids == []  # small batches step in process
    env.close()
    with pytest.raises(ConfigError, match="unknown environment options"):
        suite.make_env("hopper", 2, obs_mode="local")
    with pytest.raises(UnknownNameError):
        suite.make_env("hopper", 2, observation_mode="global")
    with pytest.raises(UnknownNameError):
        suite.make_env("walker", 2)

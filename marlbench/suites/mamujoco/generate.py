"""Multi-Agent MuJoCo datasets from an online-trained behaviour policy, as OMIGA describes them.

OMIGA (appendix B) trained HAPPO online and recorded: ``expert``, episodes of the
converged policy; ``medium``, episodes of an early-stopped policy (its Table 2 puts the
medium return at roughly a third to a half of the expert's); ``medium-replay``, all
experience observed during training up to the medium level; ``medium-expert``, equal
amounts of medium and expert data. We do the same with a single-agent behaviour policy:

- **Behaviour policy.** stable-baselines3's SAC, trained online on the single-agent
  Gymnasium task (``gymnasium.make(task.gym_id, **task.gym_kwargs)``) for ``budget``
  environment steps. SAC because it is off-policy and sample-efficient (PPO needs several
  times more environment steps for the same return, and steps are what a CPU run pays
  for), it is the standard choice for D4RL-style MuJoCo datasets, and SB3's
  implementation is well kept and tested. Hyperparameters are SB3's defaults (256-256
  MLPs, batch 256, buffer 1M, lr 3e-4, automatic entropy) except ``learning_starts``:
  ``min(10_000, budget // 5)`` random warm-up steps (rl-baselines3-zoo's MuJoCo value,
  capped so that small budgets still train). The joint action is split across agents by
  the MaMuJoCo partition (``agent_obsk=1`` as in OMIGA), so the data is what a
  centralised behaviour policy does, where OMIGA's was HAPPO's decentralised agents.
- **Training once.** Training runs once per (task, seed, budget) into ``work_dir``
  (default ``root.parent / "_behaviour" / f"seed{seed}-budget{budget}"``, i.e. beside the
  task's quality folders): ten checkpoints at budget/10, 2·budget/10, ..., budget, each
  with its evaluated mean return, and the complete online experience (observation,
  action, reward, terminated, truncated per step, plus the true final observation of
  every episode). ``manifest.json`` is written last and marks the cache complete; the
  whole directory is renamed into place, so an interrupted run leaves no half cache.
  Every quality of that task/seed/budget reuses it.
- **Qualities.** ``expert``: episodes of the final checkpoint. ``medium``: episodes of
  the checkpoint (final excluded) whose evaluated return is closest to 0.4 x the final
  one, the middle of OMIGA's "a third to a half". ``medium-replay``: every online step
  before the medium checkpoint, laid out in its episodes; the episode running at the
  checkpoint is cut there and ends without a terminal (like a time limit); its size is
  set by the budget and ``episodes`` does not apply. ``medium-expert``: the ``medium``
  dataset followed by the ``expert`` dataset of the same seed, episode for episode: equal
  episode counts when ``episodes`` is given; by default ~1M transitions each (ComaDICE's
  Table 4: 1914K = 915K + 999K for Hopper), equal in transitions, not in episodes.
- **Rollouts.** Actions are the policy's stochastic (tanh-Gaussian) samples, as D4RL
  recorded its datasets, drawn from a ``torch.Generator`` seeded from ``seed``; episode
  resets are seeded too, so a dataset is reproducible. Checkpoints are evaluated the same
  way (``EVAL_EPISODES`` stochastic episodes), so the medium level is the return of the
  data-collecting policy. Default size of ``expert``/``medium``: episodes until 1M
  transitions (Table 4: ~1M each; Hopper's early terminations made that 1.5K expert and
  4.0K medium episodes, Ant's and HalfCheetah's 1K); ``episodes`` gives an exact count.
  Episodes end at termination or at the 1000-step limit; a time limit is not a terminal
  (online experience is recorded from SB3's step locals, where a time limit shows as
  ``TimeLimit.truncated``, so SB3's replay buffer and its ``timeouts`` are not used).
- **Normalisation references.** The card records ``source.reference_returns``: ``expert``,
  the final checkpoint's evaluated return, and ``random``, the mean return of ``EVAL_EPISODES``
  episodes of uniformly random actions in [-1, 1] (D4RL's two reference policies), so reports
  normalise scores against fixed ends rather than against the compared algorithms.
- **Conversion.** Observations and states through
  :func:`~marlbench.suites.mamujoco.tasks.paper_observations` (raw observations first cast
  to float32, what the policy sees); per-agent actions ``[T, n_agents, action_dim]`` by
  the index map of gymnasium-robotics' ``map_global_action_to_local_actions``, checked
  to invert through ``map_local_actions_to_global_action``; actions are clipped to
  [-1, 1] (the Box bounds of all three tasks) and the environment is stepped with exactly
  the stored float32 action.

Speed measured here (2 cores, no GPU, Hopper, a shared machine: CPU times are the
reliable numbers). A SAC gradient step of SB3's default 256-256 networks at batch 256
costs ~23-26 ms of CPU with one torch thread (two threads were slower in wall time: the
matrices are small), so training runs ~40-50 steps/s; 64-64 networks would only be ~2.5x
faster (per-call overhead dominates), not worth departing from the defaults. Training and
rollouts therefore run with one torch thread (the caller's setting is restored). A rollout
step (16 environments batched per policy forward pass, plus the MuJoCo step) costs ~0.4 ms
of CPU. Budget 5000 (checkpoint evaluation included) takes ~105 s of CPU for training and
~2 s more for all four qualities at 20 episodes; a paper-sized budget (1M steps) is ~6-7
hours of CPU per task and seed, and 1M rollout transitions ~6-7 minutes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marlbench.data.episodes import pack_episodes
from marlbench.data.store import Dataset, check_write_target, field_layout, write_dataset, write_json_atomic
from marlbench.errors import ConfigError, MissingDependencyError, require
from marlbench.suites.mamujoco.env import mujoco_modules, quiet_mujoco_creation
from marlbench.suites.mamujoco.tasks import EPISODE_LIMIT, QUALITIES, MaMuJoCoTask, paper_observations

log = logging.getLogger(__name__)

GENERATOR = "marlbench.mamujoco-sac"
CACHE_VERSION = 1
DEFAULT_BUDGET = 1_000_000
MIN_BUDGET = 1000
N_CHECKPOINTS = 10
EVAL_EPISODES = 5
MEDIUM_FRACTION = 0.4
DEFAULT_TRANSITIONS = 1_000_000
LEARNING_STARTS_CAP = 10_000
ROLLOUT_BATCH = 16
TORCH_THREADS = 1
MANIFEST = "manifest.json"
EXPERIENCE = "experience.npz"

# Seed streams: independent random sequences for each use of ``seed``.
_EVAL_STREAM, _MEDIUM_STREAM, _EXPERT_STREAM, _RANDOM_STREAM = 1, 2, 3, 4


def _check_modules(task: MaMuJoCoTask) -> tuple[Any, Any]:
    """(stable_baselines3, gymnasium_robotics.mamujoco_v1), or ``MissingDependencyError``.

    The simulator comes through the MaMuJoCo suite's importer, which drops only
    gymnasium-robotics' Adroit notice printed on import."""
    purpose = f"Generating MaMuJoCo datasets ({task.name})"
    sb3 = require("stable_baselines3", "mamujoco", purpose)
    try:
        _, mamujoco_v1, _ = mujoco_modules()
    except MissingDependencyError as error:
        raise MissingDependencyError(error.module, "mamujoco", purpose) from error
    return sb3, mamujoco_v1


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Drop the known notices of the v4 tasks, nothing else (the suite's own filter):
    Gymnasium's "v4 is out of date" warning and HalfCheetah's ``settotalmass`` deprecation,
    which MuJoCo would print and append to ./MUJOCO_LOG.TXT."""
    _, _, mujoco = mujoco_modules()
    with quiet_mujoco_creation(mujoco):
        yield


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _preserved_global_rngs() -> Iterator[None]:
    """SB3 seeds Python's, NumPy's and torch's global generators; put them back afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def make_gym_env(task: MaMuJoCoTask):
    """The single-agent Gymnasium task with its 1000-step time limit."""
    gymnasium, _, _ = mujoco_modules()
    with _quiet():
        env = gymnasium.make(task.gym_id, **task.gym_kwargs)
    if env.spec is None or env.spec.max_episode_steps != EPISODE_LIMIT:
        raise ConfigError(f"{task.gym_id}: expected a {EPISODE_LIMIT}-step time limit, found {env.spec}")
    low, high = env.action_space.low, env.action_space.high
    if env.action_space.shape != (task.n_agents * task.action_dim,) or not (np.all(low == -1) and np.all(high == 1)):
        raise ConfigError(f"{task.gym_id}: expected actions in [-1, 1]^{task.n_agents * task.action_dim}")
    return env


def make_multiagent_env(task: MaMuJoCoTask):
    """gymnasium-robotics' MaMuJoCo ``parallel_env`` of the task (``agent_obsk=1``, as OMIGA)."""
    _, mamujoco_v1 = _check_modules(task)
    with _quiet():
        return mamujoco_v1.parallel_env(task.scenario, task.agent_conf, agent_obsk=1, gym_env=make_gym_env(task))


def action_index_map(task: MaMuJoCoTask, ma_env: Any | None = None) -> np.ndarray:
    """``[n_agents, action_dim]`` indices into the global action: ``global[..., map]`` gives
    the per-agent actions. Built from ``map_global_action_to_local_actions`` and checked to be
    inverted by ``map_local_actions_to_global_action``."""
    ma_env = make_multiagent_env(task) if ma_env is None else ma_env
    size = task.n_agents * task.action_dim
    local = ma_env.map_global_action_to_local_actions(np.arange(size, dtype=np.float64))
    agents = list(ma_env.possible_agents)
    index = np.stack([np.asarray(local[agent]) for agent in agents]).astype(np.int64)
    if index.shape != (task.n_agents, task.action_dim) or sorted(index.ravel().tolist()) != list(range(size)):
        raise ConfigError(f"{task.name}: MaMuJoCo partition {index.tolist()} is not a split of {size} actions")
    probe = np.random.default_rng(0).uniform(-1, 1, size)
    back = ma_env.map_local_actions_to_global_action({a: probe[index[i]] for i, a in enumerate(agents)})
    if not np.array_equal(back, probe):
        raise ConfigError(f"{task.name}: the MaMuJoCo action split does not invert")
    return index


# --------------------------------------------------------------------------- episodes


@dataclass
class Episode:
    """One single-agent episode: ``obs [T+1, D]`` (float32, final observation last),
    ``actions [T, A]`` (float32 global actions), ``reward [T]``, ``terminated``."""

    obs: np.ndarray
    actions: np.ndarray
    reward: np.ndarray
    terminated: bool

    @property
    def length(self) -> int:
        return int(self.reward.shape[0])


def to_fields(episodes: list[Episode], task: MaMuJoCoTask, index: np.ndarray) -> dict[str, np.ndarray]:
    """Store fields of single-agent episodes in the papers' observation mode.

    Each episode goes through :func:`pack_episodes` and is copied into preallocated
    arrays, so memory stays at the dataset's size (padding 1000-step episodes would not)."""
    spec = task.paper_spec
    rows = sum(e.length + 1 for e in episodes)
    fields = {
        name: np.zeros(tuple(rows if d == "R" else len(episodes) if d == "E" else int(d) for d in shape), dtype)
        for name, (shape, dtype) in field_layout(spec).items()
    }
    row = 0
    for number, episode in enumerate(episodes):
        obs, state = paper_observations(episode.obs, task.n_agents)
        actions = np.clip(episode.actions[:, index], -1.0, 1.0).astype(np.float32)
        packed = pack_episodes(
            obs=obs[None],
            state=state[None],
            actions=actions[None],
            reward=np.asarray(episode.reward, dtype=np.float32)[None],
            terminated=np.array([episode.terminated]),
        )
        stop = row + episode.length + 1
        for name, array in packed.items():
            if name == "episode_start":
                fields[name][number] = row
            else:
                fields[name][row:stop] = array
        row = stop
    return fields


def _episode_seeds(seed: int, stream: int, count: int) -> np.ndarray:
    return np.random.default_rng([seed, stream]).integers(0, 2**31 - 1, size=count)


def episode_reset_seed(seed: int, stream: str, episode: int) -> int:
    """The ``reset`` seed of episode ``episode`` of a rollout stream (``"medium"`` or
    ``"expert"``), so a dataset episode can be re-simulated."""
    number = {"medium": _MEDIUM_STREAM, "expert": _EXPERT_STREAM}[stream]
    return int(_episode_seeds(seed, number, episode + 1)[episode])


def rollout(
    actor: Any,
    task: MaMuJoCoTask,
    *,
    seed: int,
    stream: int,
    episodes: int | None = None,
    min_transitions: int | None = None,
    batch: int = ROLLOUT_BATCH,
) -> list[Episode]:
    """Stochastic episodes of an SB3 SAC ``actor``: exactly ``episodes`` of them, or new
    episodes are started until the finished ones hold ``min_transitions`` transitions.

    ``batch`` environments run side by side and share one policy forward pass per step."""
    if (episodes is None) == (min_transitions is None):
        raise ValueError("give exactly one of episodes and min_transitions")
    upper = episodes if episodes is not None else min_transitions  # at most one episode per transition
    seeds = _episode_seeds(seed, stream, int(upper))
    generator = torch.Generator().manual_seed(int(np.random.default_rng([seed, stream, 1]).integers(2**62)))
    envs = [make_gym_env(task) for _ in range(min(batch, int(upper)))]
    finished: dict[int, Episode] = {}
    done_transitions = 0
    started = 0
    slots: list[dict[str, Any] | None] = [None] * len(envs)

    def start(slot: int) -> None:
        nonlocal started
        obs, _ = envs[slot].reset(seed=int(seeds[started]))
        slots[slot] = {"number": started, "obs": [np.asarray(obs, np.float32)], "actions": [], "reward": []}
        started += 1

    def want_more() -> bool:
        if episodes is not None:
            return started < episodes
        return done_transitions < int(min_transitions or 0)

    for slot in range(len(envs)):
        if want_more():
            start(slot)
    actor.set_training_mode(False)
    while any(s is not None for s in slots):
        active = [i for i, s in enumerate(slots) if s is not None]
        obs = np.stack([slots[i]["obs"][-1] for i in active])  # type: ignore[index]
        with torch.no_grad():
            mean, log_std, _ = actor.get_action_dist_params(torch.as_tensor(obs))
            noise = torch.randn(mean.shape, generator=generator)
            action = torch.tanh(mean + log_std.exp() * noise).numpy()
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        for row, slot in enumerate(active):
            record = slots[slot]
            assert record is not None
            next_obs, reward, terminated, truncated, _ = envs[slot].step(action[row])
            record["actions"].append(action[row])
            record["reward"].append(float(reward))
            record["obs"].append(np.asarray(next_obs, np.float32))
            if terminated or truncated:
                episode = Episode(
                    obs=np.stack(record["obs"]),
                    actions=np.stack(record["actions"]),
                    reward=np.asarray(record["reward"], dtype=np.float64),
                    terminated=bool(terminated),
                )
                finished[record["number"]] = episode
                done_transitions += episode.length
                slots[slot] = None
                if want_more():
                    start(slot)
    for env in envs:
        env.close()
    return [finished[number] for number in sorted(finished)]


def random_policy_return(task: MaMuJoCoTask, seed: int, episodes: int = EVAL_EPISODES) -> float:
    """The mean return of ``episodes`` episodes of uniformly random actions in [-1, 1], seeded."""
    rng = np.random.default_rng([seed, _RANDOM_STREAM, 1])
    env = make_gym_env(task)
    returns = []
    for episode_seed in _episode_seeds(seed, _RANDOM_STREAM, episodes):
        env.reset(seed=int(episode_seed))
        total, done = 0.0, False
        while not done:
            action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
            _, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def _load_actor(path: Path) -> Any:
    from stable_baselines3 import SAC

    with _preserved_global_rngs():  # loading re-seeds the global generators with the saved seed
        model = SAC.load(path, device="cpu")
    return model.actor


# --------------------------------------------------------------------------- training


def default_work_dir(root: Path, seed: int, budget: int) -> Path:
    return Path(root).parent / "_behaviour" / f"seed{seed}-budget{budget}"


def checkpoint_steps(budget: int) -> list[int]:
    return [round(budget * k / N_CHECKPOINTS) for k in range(1, N_CHECKPOINTS + 1)]


def learning_starts(budget: int) -> int:
    return min(LEARNING_STARTS_CAP, budget // 5)


def _cache_key(task: MaMuJoCoTask, seed: int, budget: int) -> dict[str, Any]:
    import stable_baselines3

    return {
        "cache_version": CACHE_VERSION,
        "task": task.name,
        "gym_id": task.gym_id,
        "gym_kwargs": dict(task.gym_kwargs),
        "seed": seed,
        "budget": budget,
        "learning_starts": learning_starts(budget),
        "stable_baselines3": stable_baselines3.__version__,
    }


def _make_recorder(budget: int, steps: list[int], directory: Path, obs_dim: int, action_dim: int):
    from stable_baselines3.common.callbacks import BaseCallback

    class Recorder(BaseCallback):
        """Records every online step (SB3 passes ``_last_obs`` = the observation acted on, the
        env action, reward, done and infos, where a time limit sets ``TimeLimit.truncated`` and
        the true final observation is ``terminal_observation``) and saves the checkpoints."""

        def __init__(self) -> None:
            super().__init__()
            self.obs = np.zeros((budget, obs_dim), dtype=np.float32)
            self.actions = np.zeros((budget, action_dim), dtype=np.float32)
            self.reward = np.zeros(budget, dtype=np.float64)
            self.terminated = np.zeros(budget, dtype=bool)
            self.truncated = np.zeros(budget, dtype=bool)
            self.end_step: list[int] = []
            self.end_obs: list[np.ndarray] = []
            self.checkpoint_seconds: dict[int, float] = {}
            self.started = time.process_time()

        def _on_step(self) -> bool:
            t = self.num_timesteps - 1
            self.obs[t] = self.model._last_obs[0]  # type: ignore[index]
            self.actions[t] = self.locals["actions"][0]
            self.reward[t] = self.locals["rewards"][0]
            done = bool(self.locals["dones"][0])
            info = self.locals["infos"][0]
            truncated = done and bool(info.get("TimeLimit.truncated", False))
            self.truncated[t] = truncated
            self.terminated[t] = done and not truncated
            if done:
                self.end_step.append(t)
                self.end_obs.append(np.asarray(info["terminal_observation"], np.float32))
            elif t == budget - 1:
                self.end_step.append(t)
                self.end_obs.append(np.asarray(self.locals["new_obs"][0], np.float32))
            if t + 1 in steps:
                self.model.save(directory / f"checkpoint_{t + 1}.zip")
                self.checkpoint_seconds[t + 1] = time.process_time() - self.started
            return True

    return Recorder()


def _train_behaviour(task: MaMuJoCoTask, seed: int, budget: int, directory: Path) -> dict[str, Any]:
    """Train SAC for ``budget`` steps into ``directory`` (checkpoints + experience); return
    the manifest (without evaluations)."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv

    steps = checkpoint_steps(budget)
    obs_dim, action_dim = task.single_agent_obs_dim, task.n_agents * task.action_dim
    log.info("training SAC on %s for %d steps (seed %d) into %s", task.gym_id, budget, seed, directory)
    wall, cpu = time.time(), time.process_time()
    with _preserved_global_rngs():
        env = DummyVecEnv([lambda: make_gym_env(task)])
        model = SAC("MlpPolicy", env, learning_starts=learning_starts(budget), seed=seed, device="cpu", verbose=0)
        recorder = _make_recorder(budget, steps, directory, obs_dim, action_dim)
        model.learn(total_timesteps=budget, callback=recorder)
        env.close()
    training = {"cpu_seconds": time.process_time() - cpu, "wall_seconds": time.time() - wall}
    np.savez(
        directory / EXPERIENCE,
        obs=recorder.obs,
        actions=recorder.actions,
        reward=recorder.reward,
        terminated=recorder.terminated,
        truncated=recorder.truncated,
        end_step=np.asarray(recorder.end_step, dtype=np.int64),
        end_obs=np.stack(recorder.end_obs).astype(np.float32),
    )
    return {
        "checkpoints": [{"step": s, "file": f"checkpoint_{s}.zip"} for s in steps],
        "training": {**training, "online_episodes": int((recorder.terminated | recorder.truncated).sum())},
    }


def _evaluate_checkpoints(task: MaMuJoCoTask, seed: int, directory: Path, manifest: dict[str, Any]) -> None:
    cpu = time.process_time()
    steps = 0
    for number, checkpoint in enumerate(manifest["checkpoints"]):
        actor = _load_actor(directory / checkpoint["file"])
        episodes = rollout(actor, task, seed=seed, stream=_EVAL_STREAM * 1000 + number, episodes=EVAL_EPISODES)
        returns = np.array([e.reward.sum() for e in episodes])
        checkpoint["return_mean"] = float(returns.mean())
        checkpoint["return_std"] = float(returns.std())
        steps += sum(e.length for e in episodes)
        log.info("checkpoint %d: return %.1f", checkpoint["step"], checkpoint["return_mean"])
    manifest["evaluation"] = {"episodes": EVAL_EPISODES, "steps": steps, "cpu_seconds": time.process_time() - cpu}


def behaviour_cache(task: MaMuJoCoTask, seed: int, budget: int, work_dir: Path) -> dict[str, Any]:
    """The manifest of the trained behaviour policy in ``work_dir``, training it first if
    no complete cache is there. Raises ``ConfigError`` if ``work_dir`` holds another task's."""
    key = _cache_key(task, seed, budget)
    manifest_path = work_dir / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") != key:
            raise ConfigError(
                f"{work_dir} holds a behaviour policy for {manifest.get('key')}, not {key}; give another work_dir"
            )
        return manifest
    if work_dir.exists() and any(work_dir.iterdir()):
        raise ConfigError(f"{work_dir} exists without {MANIFEST}; remove it or give another work_dir")
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=work_dir.parent, prefix=f".{work_dir.name}.training-"))
    try:
        manifest = {"key": key, **_train_behaviour(task, seed, budget, staging)}
        _evaluate_checkpoints(task, seed, staging, manifest)
        write_json_atomic(staging / MANIFEST, manifest)
        if work_dir.exists():
            work_dir.rmdir()  # empty (checked above)
        os.replace(staging, work_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def online_episodes(work_dir: Path, until: int) -> list[Episode]:
    """The online experience of steps ``0 .. until-1`` as episodes; the episode running at
    ``until`` is cut there without a terminal."""
    data = np.load(work_dir / EXPERIENCE)
    obs, actions, reward = data["obs"], data["actions"], data["reward"]
    terminated, truncated = data["terminated"], data["truncated"]
    end_obs = dict(zip(data["end_step"].tolist(), data["end_obs"], strict=True))
    ends = np.flatnonzero((terminated | truncated)[:until]).tolist()
    if not ends or ends[-1] != until - 1:
        ends.append(until - 1)
    episodes = []
    begin = 0
    for end in ends:
        final = end_obs[end] if end in end_obs else obs[end + 1]
        episodes.append(
            Episode(
                obs=np.concatenate([obs[begin : end + 1], final[None]]),
                actions=actions[begin : end + 1],
                reward=reward[begin : end + 1],
                terminated=bool(terminated[end]),
            )
        )
        begin = end + 1
    return episodes


def medium_checkpoint(manifest: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint before the final one whose return is closest to 0.4 x the final return
    (the earliest on ties)."""
    *candidates, final = manifest["checkpoints"]
    target = MEDIUM_FRACTION * final["return_mean"]
    return min(candidates, key=lambda c: abs(c["return_mean"] - target))


# --------------------------------------------------------------------------- entry point


def generate_mamujoco_dataset(
    task: MaMuJoCoTask,
    quality: str,
    root: Path,
    *,
    seed: int = 0,
    budget: int | None = None,
    episodes: int | None = None,
    overwrite: bool = False,
    work_dir: Path | None = None,
) -> Dataset:
    """Write the ``quality`` dataset of ``task`` at ``root`` (see the module docstring).

    Args:
        budget: online SAC environment steps (default 1M, the paper-sized budget).
        episodes: episodes of ``expert`` / ``medium``, and of each part of
            ``medium-expert`` (default: ~1M transitions each); ``medium-replay`` ignores it.
        work_dir: the behaviour-policy cache (default ``root.parent/_behaviour/seed<seed>-budget<budget>``).
    """
    if quality not in QUALITIES:
        raise ConfigError(f"unknown MaMuJoCo quality {quality!r}; expected one of {QUALITIES}")
    budget = DEFAULT_BUDGET if budget is None else int(budget)
    if budget < MIN_BUDGET:
        raise ConfigError(f"budget must be at least {MIN_BUDGET} environment steps, got {budget}")
    if episodes is not None and episodes < 1:
        raise ConfigError(f"episodes must be positive, got {episodes}")
    root = Path(root)
    check_write_target(root, overwrite)
    sb3, _ = _check_modules(task)
    work_dir = default_work_dir(root, seed, budget) if work_dir is None else Path(work_dir)

    with _torch_threads(TORCH_THREADS), _quiet():
        index = action_index_map(task)
        manifest = behaviour_cache(task, seed, budget, work_dir)
        final = manifest["checkpoints"][-1]
        medium = medium_checkpoint(manifest)
        size = {"episodes": episodes} if episodes is not None else {"min_transitions": DEFAULT_TRANSITIONS}

        def collect(checkpoint: dict[str, Any], stream: int) -> list[Episode]:
            actor = _load_actor(work_dir / checkpoint["file"])
            return rollout(actor, task, seed=seed, stream=stream, **size)

        parts: dict[str, int] = {}
        if quality == "expert":
            data = collect(final, _EXPERT_STREAM)
            acting = final
        elif quality == "medium":
            data = collect(medium, _MEDIUM_STREAM)
            acting = medium
        elif quality == "medium-replay":
            data = online_episodes(work_dir, medium["step"])
            acting = medium
        else:
            medium_part = collect(medium, _MEDIUM_STREAM)
            expert_part = collect(final, _EXPERT_STREAM)
            parts = {"medium": len(medium_part), "expert": len(expert_part)}
            data = medium_part + expert_part
            acting = medium
        fields = to_fields(data, task, index)
        random_return = random_policy_return(task, seed)

    behaviour: dict[str, Any] = {
        "algorithm": "stable-baselines3 SAC",
        "version": sb3.__version__,
        "training_steps": budget,
        "checkpoint_step": acting["step"],
        "checkpoint_return": acting["return_mean"],
        "expert_return": final["return_mean"],
        "checkpoint_returns": {str(c["step"]): round(c["return_mean"], 2) for c in manifest["checkpoints"]},
    }
    if quality == "medium-expert":
        behaviour["expert_step"] = final["step"]
        behaviour["parts"] = parts
    source = {
        "generator": GENERATOR,
        "config": {
            "seed": seed,
            "budget": budget,
            "episodes": None if quality == "medium-replay" else episodes,
            "gym_id": task.gym_id,
            "gym_kwargs": dict(task.gym_kwargs),
            "learning_starts": learning_starts(budget),
            "checkpoints": N_CHECKPOINTS,
            "eval_episodes": EVAL_EPISODES,
            "medium_fraction": MEDIUM_FRACTION,
            "actions": "online experience" if quality == "medium-replay" else "stochastic policy samples",
        },
        "behaviour": behaviour,
        "reference_returns": {"random": random_return, "expert": final["return_mean"]},
    }
    return write_dataset(
        root,
        fields,
        spec=task.paper_spec,
        suite="mamujoco",
        task=task.name,
        quality=quality,
        env_options={"observation_mode": "paper"},
        source=source,
        overwrite=overwrite,
    )

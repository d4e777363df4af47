"""The MaMuJoCo environment: Multi-Agent MuJoCo through gymnasium-robotics (DESIGN.md, "Environments").

Each episode is gymnasium-robotics' ``mamujoco_v1.parallel_env(scenario, agent_conf,
agent_obsk=1, gym_env=gymnasium.make(gym_id))`` over the task table of
:mod:`marlbench.suites.mamujoco.tasks`: Hopper 3x1, Ant 2x4, HalfCheetah 6x1.

Observation modes (option ``observation_mode``):

- ``paper`` (default) reproduces the papers' datasets (OMIGA, ComaDICE): agent i sees the
  whole single-agent observation (``env.state()``) followed by its one-hot id, the vector
  standardised by its own mean and standard deviation; the state is the concatenation of
  all agents' vectors (:func:`~marlbench.suites.mamujoco.tasks.paper_observations`). Dims
  obs/state: Hopper 14/42, HalfCheetah 23/138, Ant 113/226.
- ``local`` gives gymnasium-robotics' own k=1 nearest-joint observations, zero-padded to
  the largest agent's dim (Hopper 9, HalfCheetah 9, Ant 63), with ``env.state()`` as state.

Why v4: the papers ran Gym's v2 tasks on mujoco-py, which cannot be installed today. The
v4 tasks keep v2's observation layouts and reward terms on MuJoCo 2.x+ physics (Ant-v4 with
``use_contact_forces=True`` restores v2's 111-dim observation and contact cost); v5
changed the Hopper and Ant rewards. Scores are close to, not identical with, the papers'.

Actions are ``[B, N, action_dim]`` in [-1, 1], clipped to that box and mapped to the
MuJoCo actuators through gymnasium-robotics' agent partitions (every task here has
actuator range [-1, 1]; another range would be rescaled linearly). The reward is the team
reward (every agent gets the same in MaMuJoCo); ``done`` is terminated or truncated
(``max_steps``, 1000 by default); ``info`` holds ``terminated`` and ``truncated`` [B].
``reset(seed)`` seeds episode b with ``SeedSequence([seed, b])``, so results do not depend
on how episodes are spread over processes.

Speed. ``parallel_env.step`` rebuilds every agent's local observation through
gymnasium-robotics' Python ``build_obs`` on each step (HalfCheetah: ~1.8k steps/s against
~9k for the simulation alone), so we step the single-agent MuJoCo env underneath with the
joint action built from the agent partitions, keep our own step counter for truncation,
and build local observations only in ``local`` mode; the result is the same as
``parallel_env.step`` (a test compares them).

With ``n_workers > 0`` the B episodes are split over worker processes, each stepping its
share one after another and writing paper/local observations, rewards and flags into one
shared memory buffer; per step the parent sends each worker one short message and waits
for one reply. Workers are plain subprocesses of this interpreter (not multiprocessing's
spawn/forkserver, which re-import the caller's ``__main__`` in every worker: every user
script would need an ``if __name__ == "__main__"`` guard, and workers would import torch
whenever the main module does; never ``fork``, which is unsafe after torch started
threads). ``close()``, garbage collection and interpreter exit stop and reap them; a worker
whose parent dies exits on its own. Default: 2 workers (one per core, up to 8) for B >= 8
episodes, in process below that.

Measured on the 2-core CPU machine (``benchmarks/perf/mamujoco_env.py``; the machine was
shared with other jobs, so CPU seconds are quoted beside wall times): one 32-episode x
1000-step HalfCheetah evaluation through :func:`marlbench.evaluate.evaluate` with zero
actions costs 3.3-3.5 CPU-s in process (3.4-3.6 s wall when the machine was quiet; the
``parallel_env.step`` loop took ~4.9 s) and, with 2 workers, 0.4-0.5 CPU-s in the parent
plus 1.8-2.2 CPU-s in the busiest worker, i.e. about 2.3-2.7 s wall on two free cores
(2.7 s measured with light background load). Ant is the slow task (~1.8k env steps/s,
episodes that last 1000 steps: ~15 s in process, ~8 s with 2 workers); Hopper episodes
end early (~1.1 s in process). Starting 2 workers costs 1.5-2.5 s once per environment
object (each imports gymnasium and MuJoCo); training runs cache their evaluation envs.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
import warnings
import weakref
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

import numpy as np

from marlbench.envs.base import Observation, StepResult, VecEnv
from marlbench.errors import ConfigError, UnknownNameError, require
from marlbench.spec import EnvSpec
from marlbench.suites.mamujoco.tasks import (
    EPISODE_LIMIT,
    OBSERVATION_MODES,
    PURPOSE,
    TASKS,
    MaMuJoCoTask,
    paper_observations,
)

ENV_OPTIONS = ("observation_mode", "n_workers", "max_steps")
MIN_ENVS_FOR_WORKERS = 8
"""Below this many episodes, stepping in process beats a pipe round trip per step."""
MAX_DEFAULT_WORKERS = 8

_ADROIT_NOTICE = "reward functions were updated in v1.2.1"
_V4_DEPRECATION = r".*The environment (Hopper|Ant|HalfCheetah)-v4 is out of date"
_SETTOTALMASS = "compiler attribute 'settotalmass' is deprecated"


# --- imports and quiet environment creation ---------------------------------------------


def mujoco_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(gymnasium, gymnasium_robotics.mamujoco_v1, mujoco), imported on first use.

    gymnasium-robotics 1.4.2 prints a notice about its Adroit tasks to stderr on import;
    only that notice is dropped, anything else printed then still reaches stderr.
    """
    if "gymnasium_robotics" not in sys.modules:
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):
                require("gymnasium_robotics", "mamujoco", PURPOSE)
        finally:
            rest = [line for line in captured.getvalue().splitlines(True) if _ADROIT_NOTICE not in line]
            if rest:
                sys.stderr.write("".join(rest))
    robotics = require("gymnasium_robotics", "mamujoco", PURPOSE)
    mujoco = require("mujoco", "mamujoco", PURPOSE)
    gymnasium = require("gymnasium", "mamujoco", PURPOSE)
    return gymnasium, robotics.mamujoco_v1, mujoco


@contextlib.contextmanager
def quiet_mujoco_creation(mujoco: ModuleType):
    """Drop the known deprecation notices of creating a v4 task, nothing else.

    Gymnasium warns that the v4 tasks are out of date (we use them on purpose), and
    MuJoCo >= 3.3 reports HalfCheetah's ``settotalmass`` through its own warning handler
    (printed to stderr and appended to ./MUJOCO_LOG.TXT), not through Python's warnings.
    Other MuJoCo warnings raised meanwhile become Python ``RuntimeWarning``s.
    """
    previous = mujoco.get_mju_user_warning()

    def on_warning(message: str) -> None:
        if _SETTOTALMASS not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(on_warning)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_V4_DEPRECATION, category=DeprecationWarning)
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _make_parallel_env(task: MaMuJoCoTask) -> Any:
    gymnasium, mamujoco_v1, mujoco = mujoco_modules()
    with quiet_mujoco_creation(mujoco):
        gym_env = gymnasium.make(task.gym_id, **task.gym_kwargs)
        return mamujoco_v1.parallel_env(task.scenario, task.agent_conf, agent_obsk=1, gym_env=gym_env)


@dataclass(frozen=True)
class _Layout:
    """What one episode of a task looks like in gymnasium-robotics, measured once per task."""

    single_obs_dim: int
    local_obs_dims: tuple[int, ...]
    action_sizes: tuple[int, ...]
    action_low: np.ndarray
    action_high: np.ndarray

    @property
    def n_agents(self) -> int:
        return len(self.action_sizes)


_LAYOUTS: dict[str, _Layout] = {}


def _layout(task: MaMuJoCoTask) -> _Layout:
    if task.name not in _LAYOUTS:
        env = _make_parallel_env(task)
        space = env.single_agent_env.action_space
        _LAYOUTS[task.name] = _Layout(
            single_obs_dim=int(env.single_agent_env.observation_space.shape[0]),
            local_obs_dims=tuple(int(env.observation_space(a).shape[0]) for a in env.possible_agents),
            action_sizes=tuple(len(part) for part in env.agent_action_partitions),
            action_low=np.asarray(space.low, dtype=np.float64),
            action_high=np.asarray(space.high, dtype=np.float64),
        )
        env.close()
    layout = _LAYOUTS[task.name]
    found = (layout.n_agents, layout.single_obs_dim, max(layout.action_sizes))
    expected = (task.n_agents, task.single_agent_obs_dim, task.action_dim)
    if found != expected:
        raise RuntimeError(
            f"{task.gym_id} {task.agent_conf} has (agents, single-agent obs dim, action dim) {found} in this "
            f"gymnasium-robotics, expected {expected}; install the versions of pip install -e '.[mamujoco]'"
        )
    return layout


def _env_spec(task: MaMuJoCoTask, observation_mode: str, max_steps: int) -> EnvSpec:
    if observation_mode == "paper":
        return replace(task.paper_spec, episode_limit=max_steps)
    layout = _layout(task)
    return EnvSpec(
        n_agents=task.n_agents,
        obs_dim=max(layout.local_obs_dims),
        state_dim=layout.single_obs_dim,
        action_type="continuous",
        action_dim=task.action_dim,
        episode_limit=max_steps,
    )


# --- buffers shared between the env and its workers -------------------------------------


def _buffer_shapes(n_envs: int, spec: EnvSpec) -> dict[str, tuple]:
    return {
        "actions": ((n_envs, spec.n_agents, spec.action_dim), np.float32),
        "obs": ((n_envs, spec.n_agents, spec.obs_dim), np.float32),
        "state": ((n_envs, spec.state_dim), np.float32),
        "reward": ((n_envs,), np.float64),
        "terminated": ((n_envs,), np.bool_),
        "truncated": ((n_envs,), np.bool_),
    }


def _offsets(shapes: dict[str, tuple]) -> tuple[dict[str, int], int]:
    """Where each array starts in one shared buffer (64-byte aligned), and the buffer's size."""
    offsets, size = {}, 0
    for name, (shape, dtype) in shapes.items():
        offsets[name] = size
        size += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
    return offsets, max(size, 64)


def _views(buffer: Any, shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    offsets, _ = _offsets(shapes)
    return {
        name: np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offsets[name])
        for name, (shape, dtype) in shapes.items()
    }


class _Episodes:
    """Episodes stepped one after another in this process, reading actions from and writing
    observations, rewards and flags to the given arrays (rows of the shared buffer in a worker)."""

    def __init__(self, task: MaMuJoCoTask, arrays: dict[str, np.ndarray], local: bool, max_steps: int):
        self.task = task
        self.arrays = arrays
        self.local = local
        self.max_steps = max_steps
        n_envs = arrays["actions"].shape[0]
        self.envs = [_make_parallel_env(task) for _ in range(n_envs)]
        self.sims = [env.single_agent_env.unwrapped for env in self.envs]
        layout = _layout(task)
        self.single_obs = np.zeros((n_envs, layout.single_obs_dim), dtype=np.float64)
        # joint[k] = actions[agent_index[k], slot_index[k]]: the inverse of gymnasium-robotics'
        # map_local_actions_to_global_action, as one gather for all episodes.
        joint_size = sum(layout.action_sizes)
        self.agent_index = np.zeros(joint_size, dtype=np.int64)
        self.slot_index = np.zeros(joint_size, dtype=np.int64)
        for agent, partition in enumerate(self.envs[0].agent_action_partitions):
            for slot, node in enumerate(partition):
                self.agent_index[node.act_ids] = agent
                self.slot_index[node.act_ids] = slot
        self.low, self.high = layout.action_low, layout.action_high
        self.rescale = not (np.all(self.low == -1.0) and np.all(self.high == 1.0))
        self.steps = np.zeros(n_envs, dtype=np.int64)

    def _write_local(self, index: int) -> None:
        local_obs = self.arrays["obs"][index]
        local_obs[:] = 0.0
        for agent, values in enumerate(self.envs[index]._get_obs().values()):
            local_obs[agent, : len(values)] = values

    def _write_paper(self) -> None:
        """Paper observations of every episode at once (finished ones are recomputed unchanged)."""
        obs, state = paper_observations(self.single_obs, self.task.n_agents)
        self.arrays["obs"][:] = obs
        self.arrays["state"][:] = state

    def reset(self, seeds: list[int]) -> None:
        a = self.arrays
        for index, (sim, seed) in enumerate(zip(self.sims, seeds, strict=True)):
            self.single_obs[index], _ = sim.reset(seed=int(seed))
            if self.local:
                self._write_local(index)
        if self.local:
            a["state"][:] = self.single_obs
        else:
            self._write_paper()
        a["reward"][:] = 0.0
        a["terminated"][:] = False
        a["truncated"][:] = False
        self.steps[:] = 0

    def step(self) -> None:
        a = self.arrays
        joint = np.clip(a["actions"][:, self.agent_index, self.slot_index].astype(np.float64), -1.0, 1.0)
        if self.rescale:
            joint = self.low + (joint + 1.0) * 0.5 * (self.high - self.low)
        finished = a["terminated"] | a["truncated"]
        for index, sim in enumerate(self.sims):
            if finished[index]:
                a["reward"][index] = 0.0
                continue
            self.single_obs[index], reward, terminated, truncated, _ = sim.step(joint[index])
            self.steps[index] += 1
            a["reward"][index] = reward
            a["terminated"][index] = terminated
            a["truncated"][index] = bool(truncated) or self.steps[index] >= self.max_steps
            if self.local:
                self._write_local(index)
        if self.local:
            a["state"][:] = self.single_obs
        else:
            self._write_paper()

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs, self.sims = [], []


# --- worker processes --------------------------------------------------------------------
#
# Workers are plain subprocesses running this module's ``_worker_main`` (not
# multiprocessing's spawn/forkserver, which re-import the caller's ``__main__`` in every
# worker: that needs an ``if __name__ == "__main__"`` guard in every user script and makes
# each worker import torch when the main module does). A worker imports only numpy,
# gymnasium and MuJoCo. It talks to the parent through a socket pair wrapped in a
# ``multiprocessing.connection.Connection`` and reads/writes its rows of one shared memory
# buffer (a memfd, or an unlinked temporary file, inherited by file descriptor), so nothing
# is left behind in /dev/shm even if the parent is killed.

_WORKER_CODE = (
    "import json, sys; args = json.loads(sys.argv[1]); sys.path[:] = args['sys_path']; "
    "from marlbench.suites.mamujoco.env import _worker_main; _worker_main(args)"
)
"""The worker imports modules exactly as the parent does (same interpreter, same sys.path)."""


def _worker_main(args: dict[str, Any]) -> None:
    """A worker owns episodes [start, stop): it steps them when told, writing the shared buffer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    conn = Connection(args["conn_fd"])
    episodes = None
    try:
        task = MaMuJoCoTask(**args["task"])
        spec = _env_spec(task, "local" if args["local"] else "paper", args["max_steps"])
        shapes = _buffer_shapes(args["n_envs"], spec)
        buffer = mmap.mmap(args["buffer_fd"], _offsets(shapes)[1])
        os.close(args["buffer_fd"])
        rows = slice(args["start"], args["stop"])
        arrays = {name: view[rows] for name, view in _views(buffer, shapes).items()}
        episodes = _Episodes(task, arrays, args["local"], args["max_steps"])
        conn.send(("ok", None))
        while True:
            try:
                command, payload = conn.recv()
            except EOFError:  # the parent is gone
                break
            if command == "close":
                break
            try:
                if command == "step":
                    episodes.step()
                elif command == "reset":
                    episodes.reset(payload)
                else:
                    raise ValueError(f"unknown command {command!r}")
                conn.send(("ok", None))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        if episodes is not None:
            episodes.close()
        conn.close()


def _shared_buffer(size: int) -> tuple[int, mmap.mmap]:
    """A file descriptor of ``size`` zero bytes with no name on disk, and its shared mapping."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("marlbench-mamujoco", 0)
    else:
        with tempfile.NamedTemporaryFile(prefix="marlbench-mamujoco-", delete=False) as handle:
            fd = os.dup(handle.fileno())
        os.unlink(handle.name)
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


def _start_worker(buffer_fd: int, **args: Any) -> tuple[subprocess.Popen, Connection]:
    parent, child = socket.socketpair()
    try:
        args.update(conn_fd=child.fileno(), buffer_fd=buffer_fd, sys_path=sys.path)
        process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, json.dumps(args)],
            pass_fds=(child.fileno(), buffer_fd),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return process, Connection(parent.detach())


def _shutdown(owner: int, processes: list[subprocess.Popen], connections: list[Connection]) -> None:
    """Stop workers: ask them to exit, then kill whatever is still running, and reap them."""
    if os.getpid() != owner:  # a forked copy of the owner must not stop the owner's workers
        return
    for conn in connections:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("close", None))
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for conn in connections:
        conn.close()
    processes.clear()
    connections.clear()


def default_workers(n_envs: int) -> int:
    """Worker processes used when ``n_workers`` is not given: one per core (at most 8, and
    at least 4 episodes each) for 8 or more episodes on a multi-core POSIX machine, else none.

    On 2 cores, 2 workers halve a 32-episode evaluation (see the module docstring); a
    batch of fewer than 8 episodes gains too little to pay a pipe round trip per step."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if os.name != "posix" or not sys.executable or cores < 2 or n_envs < MIN_ENVS_FOR_WORKERS:
        return 0
    return max(2, min(cores, MAX_DEFAULT_WORKERS, n_envs // 4))


# --- the environment ---------------------------------------------------------------------


class MaMuJoCoEnv(VecEnv):
    """B episodes of one MaMuJoCo task, stepped in process or by worker processes.

    Options: ``observation_mode`` ("paper" or "local"), ``n_workers`` (None: see
    :func:`default_workers`; 0 steps in process), ``max_steps`` (truncation, default 1000).
    """

    def __init__(
        self,
        task: str | MaMuJoCoTask,
        n_envs: int,
        *,
        observation_mode: str = "paper",
        n_workers: int | None = None,
        max_steps: int = EPISODE_LIMIT,
    ):
        super().__init__(n_envs)
        if isinstance(task, str):
            if task not in TASKS:
                raise UnknownNameError("task of suite mamujoco", task, TASKS)
            task = TASKS[task]
        if observation_mode not in OBSERVATION_MODES:
            raise UnknownNameError("observation mode of mamujoco", observation_mode, OBSERVATION_MODES)
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"mamujoco option max_steps must be a positive integer, got {max_steps!r}")
        if n_workers is None:
            n_workers = default_workers(n_envs)
        if not isinstance(n_workers, int) or n_workers < 0:
            raise ConfigError(f"mamujoco option n_workers must be a non-negative integer, got {n_workers!r}")
        self.task = task
        self.observation_mode = observation_mode
        self.max_steps = max_steps
        self.n_workers = min(n_workers, n_envs)
        self._local = observation_mode == "local"
        _layout(task)  # imports MuJoCo here, so a missing install fails in this process
        self.spec = _env_spec(task, observation_mode, max_steps)
        shapes = _buffer_shapes(n_envs, self.spec)
        self._processes: list[subprocess.Popen] = []
        self._connections: list[Connection] = []
        self._slices: list[slice] = []
        self._episodes: _Episodes | None = None
        self._started = False
        if self.n_workers == 0:
            self._arrays = {name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()}
            self._episodes = _Episodes(task, self._arrays, self._local, max_steps)
            self._finalizer = weakref.finalize(self, self._episodes.close)
            return
        if os.name != "posix":
            raise ConfigError("mamujoco option n_workers > 0 needs a POSIX system; use n_workers=0")
        self._finalizer = weakref.finalize(self, _shutdown, os.getpid(), self._processes, self._connections)
        buffer_fd, self._buffer = _shared_buffer(_offsets(shapes)[1])
        try:
            self._arrays = _views(self._buffer, shapes)
            bounds = np.linspace(0, n_envs, self.n_workers + 1).round().astype(int)
            for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
                process, conn = _start_worker(
                    buffer_fd,
                    task=asdict(task),
                    n_envs=n_envs,
                    start=start,
                    stop=stop,
                    local=self._local,
                    max_steps=max_steps,
                )
                self._processes.append(process)
                self._connections.append(conn)
                self._slices.append(slice(start, stop))
            self._gather("start")
        except BaseException:
            self.close()
            raise
        finally:
            os.close(buffer_fd)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (empty when stepping in process or closed)."""
        return [process.pid for process in self._processes]

    def _gather(self, what: str, unreachable: frozenset[int] | set[int] = frozenset()) -> None:
        """Wait for the answer of every worker that got the command; raise the first worker error."""
        errors = []
        for index, conn in enumerate(self._connections):
            try:
                if index in unreachable:
                    raise EOFError
                status, payload = conn.recv()
            except (EOFError, OSError):
                code = self._processes[index].wait(timeout=5)
                status, payload = "error", f"worker {index} exited (exit code {code}); its stderr is above"
            if status != "ok":
                errors.append(payload)
        if errors:
            raise RuntimeError(f"MaMuJoCo worker failed during {what}:\n{errors[0]}")

    def _call(self, command: str, payloads: list[Any] | None = None) -> None:
        """Run a command in every worker. Any failure (a worker error, Ctrl-C) closes the env:
        its workers would no longer be in step with each other."""
        if not self._connections and self._episodes is None:
            raise RuntimeError("this MaMuJoCoEnv is closed")
        try:
            unreachable = set()
            for index, conn in enumerate(self._connections):
                try:
                    conn.send((command, None if payloads is None else payloads[index]))
                except OSError:  # the worker has exited and its end of the pipe is closed
                    unreachable.add(index)
            self._gather(command, unreachable)
        except BaseException:
            self.close()
            raise

    def _observe(self) -> Observation:
        return self._arrays["obs"].copy(), self._arrays["state"].copy(), None

    def episode_seeds(self, seed: int) -> list[int]:
        """The seed of each episode's MuJoCo env: a function of (seed, episode index) only."""
        return [int(np.random.SeedSequence([seed, b]).generate_state(1)[0]) for b in range(self.n_envs)]

    def reset(self, seed: int) -> Observation:
        seeds = self.episode_seeds(seed)
        if self._episodes is not None:
            self._episodes.reset(seeds)
        else:
            self._call("reset", [seeds[s] for s in self._slices])
        self._started = True
        return self._observe()

    def step(self, actions: np.ndarray) -> StepResult:
        if not self._started:
            raise RuntimeError("MaMuJoCoEnv.step called before reset")
        actions = np.asarray(actions, dtype=np.float32)
        expected = self._arrays["actions"].shape
        if actions.shape != expected:
            raise ValueError(
                f"{self.task.name}: actions must have shape {expected} [B, N, action_dim], got {actions.shape}"
            )
        self._arrays["actions"][:] = actions
        if self._episodes is not None:
            self._episodes.step()
        else:
            self._call("step")
        a = self._arrays
        terminated, truncated = a["terminated"].copy(), a["truncated"].copy()
        obs, state, avail = self._observe()
        info = {"terminated": terminated, "truncated": truncated}
        return obs, state, avail, a["reward"].astype(np.float32), terminated | truncated, info

    def close(self) -> None:
        self._finalizer()
        self._episodes = None

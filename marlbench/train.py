"""One run: seed, sample, update, evaluate, checkpoint, resume (DESIGN.md, "One run").

A run writes ``<results>/<suite>/<task>/<quality>/<algo>/<variant>/seed<k>/``:

- ``config.json``: the run's identity (algorithm config, profile, seed, the dataset's content:
  its ``source`` and the sha256 of every file, never its path) and a ``runtime`` section
  (threads, device, dataset path, marlbench version) that is recorded but not compared, so
  a resumed run may use another thread count or another spelling of the data path; and a
  ``display`` section (the algorithm's ``display_name`` and ``column_order``), also not
  compared, from which a report made without the registry takes its column headings;
- ``metrics.jsonl``: one line per logging interval (``kind: train``, mean losses) and one
  per evaluation (``kind: eval``);
- ``checkpoint.pt``: networks, optimisers, sampler and RNG states, running loss sums;
- ``result.json``: status (``completed`` or ``diverged``), the final score (the last
  evaluation, taken with ``final_eval_episodes`` episodes), the full config and the
  ``provenance`` of the code and machine that finished it;
- ``run.lock`` while a run trains: one run per directory at a time.

Every file is replaced atomically. A rerun with the same identity resumes from the last
checkpoint and first drops metric lines written after it, so no step appears twice; a
rerun with another identity refuses; ``overwrite`` starts the run afresh whatever the
directory holds (another config, an unusable checkpoint, a finished run); a finished run
is returned as it is. A non-finite value in a loss, in an evaluation, or inside a forward
pass (torch's checks of distribution arguments and of sampling probabilities) ends the run
as ``diverged`` with its step and what was found.

Threads: each run sets torch's intra- and inter-op thread counts from ``threads`` (default:
torch's own count, at most the cores this process may use), and ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` for the processes it starts (evaluation
workers); BLAS pools already loaded are limited through threadpoolctl when it is installed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marlbench import __version__
from marlbench.algorithm import Algorithm, AlgorithmConfig, get_algorithm, resolve_config
from marlbench.benchmark import variant_name
from marlbench.data.sampler import Sampler
from marlbench.data.store import Dataset, atomic_temp_file, write_json_atomic, write_text_atomic
from marlbench.envs.base import VecEnv
from marlbench.errors import ConfigError, DatasetError, RunDirectoryError
from marlbench.evaluate import EvalResult, evaluate
from marlbench.profiles import Profile
from marlbench.provenance import provenance
from marlbench.runlock import LOCK_FILE, RunLock, acquire_run_lock, storage_errors
from marlbench.suites import Suite, get_suite
from marlbench.workspace import DEFAULT_DATA, DEFAULT_RESULTS, dataset_root

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
RUNTIME_KEY = "runtime"
"""The section of ``config.json`` about this invocation, left out of the run's identity."""
DISPLAY_KEY = "display"
"""The section of ``config.json`` with the algorithm's column heading and order (``display_name``,
``column_order``), for reports made without the registry; left out of the run's identity."""
NOT_IDENTITY = (RUNTIME_KEY, DISPLAY_KEY)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CHECKPOINT_FIELDS = ("step", "elapsed", "algorithm", "sampler", "torch_rng", "numpy_rng", "loss_sums", "loss_counts")
AFRESH = "Rerun the same command with --overwrite to start this run afresh"


@dataclass
class RunRequest:
    """What ``marlbench run`` asks for; ``overrides`` are the user's config fields. ``results``
    (run directories go below it) and ``data`` (the data root) are resolved paths: the entry
    point took them from its :class:`marlbench.workspace.Workspace`."""

    algo: str
    suite: str
    task: str
    quality: str
    seed: int
    profile: str = "standard"
    overrides: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    results: Path = DEFAULT_RESULTS
    data: Path = DEFAULT_DATA
    dataset_path: Path | None = None
    device: str = "cpu"
    overwrite: bool = False
    steps: int | None = None
    progress: bool | None = None
    threads: int | None = None
    break_lock: bool = False


@dataclass
class RunOutcome:
    run_dir: Path
    result: dict[str, Any]


Callback = Callable[[int, Path], None]


def run_directory(request: RunRequest) -> Path:
    variant = request.variant or variant_name(request.overrides)
    return (
        Path(request.results)
        / request.suite
        / request.task
        / request.quality
        / request.algo
        / variant
        / f"seed{request.seed}"
    )


def open_or_generate_dataset(request: RunRequest, suite: Suite) -> Dataset:
    """Open the run's dataset (``suite`` is the request's); generate it first when the suite can
    do so in seconds."""
    suite.check_quality(request.task, request.quality)
    root = request.dataset_path or dataset_root(request.data, request.suite, request.task, request.quality)
    if not (root / "meta.json").exists() and request.dataset_path is None and suite.generates_on_the_fly:
        suite.generate(request.task, request.quality, root)
    if not root.exists():
        raise DatasetError(
            root,
            "dataset",
            f"a dataset for {request.suite}/{request.task}/{request.quality}",
            "no such directory",
            f"create it with: marlbench data generate --suite {request.suite} --task {request.task} "
            f"--quality {request.quality}",
        )
    dataset = Dataset.open(root)
    identity = (dataset.meta["suite"], dataset.meta["task"], dataset.meta["quality"])
    if identity != (request.suite, request.task, request.quality):
        raise DatasetError(
            root / "meta.json",
            "suite/task/quality",
            f"{request.suite}/{request.task}/{request.quality}",
            "/".join(identity),
        )
    env_options = dataset.meta.get("env_options", {})
    probe = suite.make_env(request.task, 1, **env_options)
    try:
        if probe.spec != dataset.spec:
            raise DatasetError(
                root / "meta.json",
                "spec",
                f"the environment's {probe.spec} (env_options {env_options})",
                dataset.spec,
                "the dataset was recorded for another task or observation mode",
            )
    finally:
        probe.close()
    return dataset


def dataset_identity(dataset: Dataset) -> dict[str, Any]:
    """What makes two datasets the same for a run: their content, never their path."""
    files = dataset.meta["files"]
    return {"source": dataset.meta["source"], "sha256": {name: files[name]["sha256"] for name in sorted(files)}}


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Give this process ``threads`` threads (default: torch's count, at most the available
    cores) for torch, loaded BLAS/OpenMP pools and the processes it starts; returns the count."""
    count = threads if threads is not None else min(torch.get_num_threads(), available_cores())
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        try:
            torch.set_num_interop_threads(count)
        except RuntimeError:
            pass  # torch allows it only before its first inter-op parallel work in this process
    for name in THREAD_VARIABLES:
        os.environ[name] = str(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return count
    threadpool_limits(limits=count)
    return count


def _write_json(path: Path, data: Any) -> None:
    with storage_errors(path):
        write_json_atomic(path, data)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirectoryError(path, "a JSON file written by marlbench", f"invalid JSON ({error})", AFRESH) from error


def _append_metrics(path: Path, record: Mapping[str, Any]) -> None:
    with storage_errors(path), open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the metric lines up to ``last_step`` (a resumed run writes the rest again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", math.inf) <= last_step:
            kept.append(line)
    with storage_errors(path):
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with storage_errors(path):
        tmp = atomic_temp_file(path)
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # a damaged file fails anywhere in torch's zip and pickle readers
        raise RunDirectoryError(
            path,
            "a checkpoint written by torch.save",
            f"an unreadable file of {path.stat().st_size} bytes ({type(error).__name__}: {_first_line(error)})",
            AFRESH,
        ) from error
    missing = [name for name in CHECKPOINT_FIELDS if not isinstance(checkpoint, dict) or name not in checkpoint]
    if missing:
        raise RunDirectoryError(path, f"the fields {', '.join(CHECKPOINT_FIELDS)}", f"no {', '.join(missing)}", AFRESH)
    return checkpoint


def _restore(path: Path, checkpoint: Mapping[str, Any], algorithm: Algorithm, sampler: Sampler) -> None:
    parts: dict[str, Callable[[Any], Any]] = {
        "algorithm": algorithm.load_state_dict,
        "sampler": sampler.load_state_dict,
        "torch_rng": torch.set_rng_state,
        "numpy_rng": np.random.set_state,
    }
    for name, load in parts.items():
        try:
            load(checkpoint[name])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise RunDirectoryError(
                path,
                f"field '{name}' to fit this version of {algorithm.name}",
                f"{type(error).__name__}: {_first_line(error)}",
                f"It was saved by another marlbench version or is damaged. {AFRESH}",
            ) from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def evaluation_seed(seed: int, step: int) -> int:
    """Environment seed of the evaluation at ``step``: fixed by the run seed and the step."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


class _Evaluator:
    """Keeps one vectorised environment per episode count."""

    def __init__(self, make_env: Callable[[int], VecEnv]):
        self._make_env = make_env
        self._envs: dict[int, VecEnv] = {}

    def __call__(self, algorithm: Algorithm, episodes: int, seed: int) -> EvalResult:
        if episodes not in self._envs:
            self._envs[episodes] = self._make_env(episodes)
        return evaluate(algorithm, self._envs[episodes], seed)

    def close(self) -> None:
        for env in self._envs.values():
            env.close()


def _check_request(request: RunRequest) -> None:
    """Values that would fail deep inside a run are refused before anything is created."""
    optional = (("steps", request.steps), ("threads", request.threads))
    checks = [("seed", request.seed, 0)] + [(name, value, 1) for name, value in optional if value is not None]
    for name, value, lowest in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ConfigError(f"{name} (--{name}): expected an integer >= {lowest}, found {value!r}")


def _batch_size_used(config: AlgorithmConfig, profile: Profile, request: RunRequest) -> AlgorithmConfig:
    """The profile's batch size (a budget is steps x batch) unless the user set one."""
    if profile.batch_size is not None and "batch_size" not in request.overrides:
        config = replace(config, batch_size=profile.batch_size)
    if config.batch_size < 1:
        raise ConfigError(f"{request.algo}: field 'batch_size': expected an integer >= 1, found {config.batch_size}")
    return config


def _identity_changes(existing: Any, run_config: Mapping[str, Any]) -> list[str]:
    if not isinstance(existing, dict):
        return ["the whole file"]
    keys = (set(existing) | set(run_config)) - set(NOT_IDENTITY)
    return sorted(key for key in keys if existing.get(key) != run_config.get(key))


def train(
    request: RunRequest,
    on_evaluation: Callable[[int, dict[str, Any]], None] | None = None,
    on_checkpoint: Callback | None = None,
) -> RunOutcome:
    """Train and evaluate one algorithm on one dataset with one seed (see module docstring)."""
    _check_request(request)
    algorithm_cls = get_algorithm(request.algo)
    suite = get_suite(request.suite)
    task = suite.task(request.task)
    suite.check_quality(request.task, request.quality)
    if task.spec.action_type not in algorithm_cls.action_types:
        raise ConfigError(
            f"{request.algo} supports {', '.join(algorithm_cls.action_types)} actions; "
            f"{request.suite}/{request.task} has {task.spec.action_type} actions"
        )
    profile = suite.profile(request.profile).with_overrides(steps=request.steps)
    config = resolve_config(
        algorithm_cls,
        request.suite,
        request.task,
        request.quality,
        request.overrides,
        total_steps=profile.steps,
        spec=task.spec,
    )
    config = _batch_size_used(config, profile, request)
    threads = set_threads(request.threads)
    dataset = open_or_generate_dataset(request, suite)
    run_dir = run_directory(request)
    run_config = {
        "algo": request.algo,
        "suite": request.suite,
        "task": request.task,
        "quality": request.quality,
        "seed": request.seed,
        "variant": run_dir.parent.name,
        "profile": {"name": request.profile, **profile.to_dict()},
        "algorithm_config": asdict(config),
        "user_overrides": dict(request.overrides),
        "dataset": dataset_identity(dataset),
        "spec": task.spec.to_dict(),
        DISPLAY_KEY: {
            "display_name": getattr(algorithm_cls, "display_name", request.algo),
            "column_order": algorithm_cls.column_order,
        },
        RUNTIME_KEY: {
            "threads": threads,
            "device": request.device,
            "dataset_path": str(dataset.root.absolute()),
            "marlbench_version": __version__,
        },
    }
    run_config = json.loads(json.dumps(run_config))
    with storage_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    lock = acquire_run_lock(run_dir, request.break_lock)
    try:
        finished = _prepare_run_directory(request, run_dir, run_config)
        if finished is not None:
            return finished
        return _train_loop(
            request,
            algorithm_cls,
            suite,
            config,
            profile,
            dataset,
            run_dir,
            run_config,
            lock,
            on_evaluation,
            on_checkpoint,
        )
    finally:
        lock.release()


def _prepare_run_directory(request: RunRequest, run_dir: Path, run_config: dict[str, Any]) -> RunOutcome | None:
    """Empty the directory for ``overwrite``, refuse another identity, return a finished run;
    otherwise record the config (its runtime section is this invocation's)."""
    config_path = run_dir / CONFIG_FILE
    if request.overwrite:
        for entry in run_dir.iterdir():
            if entry.name.startswith(LOCK_FILE):
                continue
            with storage_errors(entry):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    elif config_path.exists():
        changed = _identity_changes(_read_json(config_path), run_config)
        if changed:
            raise ConfigError(
                f"{run_dir} holds a run with another config (differs in: {', '.join(changed)}); "
                "pass --overwrite to replace it or --variant to keep both"
            )
        if (run_dir / RESULT_FILE).exists():
            return RunOutcome(run_dir, _read_json(run_dir / RESULT_FILE))
    _write_json(config_path, run_config)
    return None


class _Diverged(Exception):
    def __init__(self, step: int, message: str, losses: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.step = step
        self.message = message
        self.losses = dict(losses or {})


# What torch says when a forward pass meets a non-finite value: the argument check of every
# distribution (``Categorical(logits=nan)``) and the probability check of sampling.
_NON_FINITE_MARKERS = ("found invalid values", "probability tensor contains either `inf`, `nan` or element < 0")


@contextmanager
def _non_finite_ends_run(step: int, where: str) -> Iterator[None]:
    try:
        yield
    except (ValueError, RuntimeError) as error:
        if not any(marker in str(error) for marker in _NON_FINITE_MARKERS):
            raise
        raise _Diverged(step, f"non-finite values in the {where} (torch: {_first_line(error).rstrip(':')})") from error


def _non_finite(values: Mapping[str, Any]) -> dict[str, str]:
    """The non-finite numbers of ``values`` (nested mappings included), as text."""
    found: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            found.update({f"{key}.{inner}": text for inner, text in _non_finite(value).items()})
        elif isinstance(value, (int, float, torch.Tensor)) and not isinstance(value, bool):
            number = float(value)
            if not math.isfinite(number):
                found[key] = str(number)
    return found


def _describe(kind: str, values: Mapping[str, str]) -> str:
    return f"non-finite {kind}: " + ", ".join(f"{key}={text}" for key, text in values.items())


def _train_loop(
    request: RunRequest,
    algorithm_cls: type[Algorithm],
    suite: Suite,
    config: AlgorithmConfig,
    profile: Profile,
    dataset: Dataset,
    run_dir: Path,
    run_config: dict[str, Any],
    lock: RunLock,
    on_evaluation: Callable[[int, dict[str, Any]], None] | None,
    on_checkpoint: Callback | None,
) -> RunOutcome:
    device = torch.device(request.device)
    torch.manual_seed(request.seed)
    np.random.seed(request.seed % (2**32))
    algorithm = algorithm_cls(dataset.spec, config, device)
    sampler = Sampler(dataset, seed=request.seed, device=device)
    metrics_path = run_dir / METRICS_FILE
    checkpoint_path = run_dir / CHECKPOINT_FILE
    start_step, elapsed, cpu_elapsed = 0, 0.0, 0.0
    # Sums and counts per loss: a multi-phase algorithm logs different losses in each phase.
    loss_sums: dict[str, float] = {}
    loss_counts: dict[str, int] = {}
    last_eval: dict[str, Any] | None = None
    if checkpoint_path.exists():
        checkpoint = _load_checkpoint(checkpoint_path, device)
        _restore(checkpoint_path, checkpoint, algorithm, sampler)
        start_step, elapsed = checkpoint["step"], checkpoint["elapsed"]
        cpu_elapsed = checkpoint.get("cpu_elapsed", 0.0)
        loss_sums, loss_counts, last_eval = checkpoint["loss_sums"], checkpoint["loss_counts"], checkpoint["last_eval"]
    _truncate_metrics(metrics_path, start_step)
    env_options = dataset.meta.get("env_options", {})
    evaluator = _Evaluator(lambda n: suite.make_env(request.task, n, **env_options))
    show_progress = sys.stderr.isatty() if request.progress is None else request.progress
    progress = _progress_bar(show_progress, profile.steps, start_step, run_dir)
    # Losses may be 0-d tensors. On the CPU reading them costs nothing, so a non-finite
    # loss is caught at its step; on an accelerator they are read only when logging.
    check_every_step = device.type == "cpu"
    started = time.monotonic() - elapsed
    # CPU seconds of this process (all its threads): on a loaded machine the cost a quiet one would take.
    cpu_started = time.process_time() - cpu_elapsed
    diverged: _Diverged | None = None
    # A train line is also written at the last step of each phase, so every phase shows in
    # metrics.jsonl however short the run: {step: name of the phase it ends}.
    phase_starts = algorithm.phase_starts()
    phase_ends = _phase_ends(phase_starts, profile.steps)
    try:
        for step in range(start_step + 1, profile.steps + 1):
            lock.refresh()
            with _non_finite_ends_run(step, "update"):
                losses = algorithm.update(sampler.sample(config.batch_size), step)
            for key, value in losses.items():
                loss_sums[key] = loss_sums.get(key, 0.0) + value
                loss_counts[key] = loss_counts.get(key, 0) + 1
            logging = step % profile.log_every == 0 or step in phase_ends
            if (check_every_step or logging) and (bad := _non_finite(loss_sums)):
                raise _Diverged(step, _describe("loss", bad), losses)
            if logging:
                means = {key: float(total) / loss_counts[key] for key, total in loss_sums.items()}
                phase = _phase_at(phase_starts, step)
                _append_metrics(metrics_path, {"step": step, "kind": "train", "phase": phase, **means})
                loss_sums, loss_counts = {}, {}
            if step % profile.eval_every == 0 or step == profile.steps:
                episodes = profile.final_eval_episodes if step == profile.steps else profile.eval_episodes
                with _non_finite_ends_run(step, "evaluation"):
                    last_eval = evaluator(algorithm, episodes, evaluation_seed(request.seed, step)).to_dict()
                if bad := _non_finite(last_eval):
                    raise _Diverged(step, _describe("evaluation", bad))
                _append_metrics(metrics_path, {"step": step, "kind": "eval", **last_eval})
                if on_evaluation is not None:
                    on_evaluation(step, last_eval)
            if step % profile.checkpoint_every == 0 or step == profile.steps:
                _save_checkpoint(
                    checkpoint_path,
                    {
                        "step": step,
                        "elapsed": time.monotonic() - started,
                        "cpu_elapsed": time.process_time() - cpu_started,
                        "algorithm": algorithm.state_dict(),
                        "sampler": sampler.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "numpy_rng": np.random.get_state(),
                        "loss_sums": {key: float(total) for key, total in loss_sums.items()},
                        "loss_counts": loss_counts,
                        "last_eval": last_eval,
                    },
                )
                if on_checkpoint is not None:
                    on_checkpoint(step, run_dir)
            progress.update(1)
    except _Diverged as stop:
        diverged = stop
        record = {"step": stop.step, "kind": "diverged", "message": stop.message, **_finite_or_text(stop.losses)}
        _append_metrics(metrics_path, record)
    finally:
        progress.close()
        evaluator.close()
    result = {
        "algo": request.algo,
        "suite": request.suite,
        "task": request.task,
        "quality": request.quality,
        "seed": request.seed,
        "variant": run_config["variant"],
        "profile": request.profile,
        "steps": profile.steps if diverged is None else diverged.step,
        "status": "completed" if diverged is None else "diverged",
        "diverged_step": None if diverged is None else diverged.step,
        "diverged_message": None if diverged is None else diverged.message,
        "final": last_eval if diverged is None else None,
        "wall_time_s": round(time.monotonic() - started, 3),
        "cpu_time_s": round(time.process_time() - cpu_started, 3),
        "config": run_config,
        "provenance": provenance(device),
    }
    _write_json(run_dir / RESULT_FILE, result)
    return RunOutcome(run_dir, json.loads(json.dumps(result)))


def _phase_at(starts: Mapping[str, int], step: int) -> str:
    """The name of the phase ``step`` belongs to (the latest phase started at or before it)."""
    return max((start, name) for name, start in starts.items() if start <= step)[1]


def _phase_ends(starts: Mapping[str, int], total_steps: int) -> set[int]:
    """The last step of every phase that ends inside the run."""
    return {start - 1 for start in starts.values() if 1 < start <= total_steps + 1}


def _finite_or_text(losses: Mapping[str, Any]) -> dict[str, float | str]:
    values = {key: float(value) for key, value in losses.items()}
    return {key: value if math.isfinite(value) else str(value) for key, value in values.items()}


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool, total: int, initial: int, run_dir: Path) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=str(run_dir), unit="step", dynamic_ncols=True)

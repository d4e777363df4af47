"""One run: seed, sample, update, evaluate, checkpoint, resume (DESIGN.md, "One run").

A run writes ``<results>/<suite>/<task>/<quality>/<algo>/<variant>/seed<k>/``:

- ``config.json``: everything that determines the run (algorithm config, profile, dataset);
- ``metrics.jsonl``: one line per logging interval (``kind: train``, mean losses) and one
  per evaluation (``kind: eval``);
- ``checkpoint.pt``: networks, optimisers, sampler and RNG states, running loss sums;
- ``result.json``: status (``completed`` or ``diverged``), the final score (the last
  evaluation, taken with ``final_eval_episodes`` episodes) and the full config.

Every file is replaced atomically. A rerun with the same config resumes from the last
checkpoint and first drops metric lines written after it, so no step appears twice; a
rerun with a different config refuses unless ``overwrite`` is set; a completed run is
returned as it is.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marlbench import __version__
from marlbench.algorithm import Algorithm, get_algorithm, resolve_config
from marlbench.benchmark import variant_name
from marlbench.data.paths import dataset_root
from marlbench.data.sampler import Sampler
from marlbench.data.store import Dataset, atomic_temp_file, write_json_atomic, write_text_atomic
from marlbench.envs.base import VecEnv
from marlbench.envs.registry import get_suite
from marlbench.errors import ConfigError, DatasetError, MarlbenchError
from marlbench.evaluate import EvalResult, evaluate

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class RunRequest:
    """What ``marlbench run`` asks for; ``overrides`` are the user's config fields."""

    algo: str
    suite: str
    task: str
    quality: str
    seed: int
    profile: str = "standard"
    overrides: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    results: Path = Path("results")
    data: Path | None = None
    dataset_path: Path | None = None
    device: str = "cpu"
    overwrite: bool = False
    steps: int | None = None
    progress: bool | None = None


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


def open_or_generate_dataset(request: RunRequest) -> Dataset:
    """Open the run's dataset; generate it first when the suite can do so in seconds."""
    suite = get_suite(request.suite)
    suite.check_quality(request.task, request.quality)
    root = request.dataset_path or dataset_root(request.suite, request.task, request.quality, request.data)
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


def _append_metrics(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as handle:
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
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = atomic_temp_file(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def train(
    request: RunRequest,
    on_evaluation: Callable[[int, dict[str, Any]], None] | None = None,
    on_checkpoint: Callback | None = None,
) -> RunOutcome:
    """Train and evaluate one algorithm on one dataset with one seed (see module docstring)."""
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
        algorithm_cls, request.suite, request.task, request.quality, request.overrides, total_steps=profile.steps
    )
    dataset = open_or_generate_dataset(request)
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
        "dataset": {
            "path": str(dataset.root),
            "source": dataset.meta["source"],
            "statistics": dataset.meta["statistics"],
        },
        "spec": task.spec.to_dict(),
        "marlbench_version": __version__,
    }
    config_path = run_dir / CONFIG_FILE
    if config_path.exists():
        existing = json.loads(config_path.read_text())
        if existing != json.loads(json.dumps(run_config)):
            if not request.overwrite:
                changed = sorted(k for k in run_config if existing.get(k) != json.loads(json.dumps(run_config))[k])
                raise ConfigError(
                    f"{run_dir} holds a run with another config (differs in: {', '.join(changed)}); "
                    "pass --overwrite to replace it or --variant to keep both"
                )
            shutil.rmtree(run_dir)
        elif (run_dir / RESULT_FILE).exists():
            return RunOutcome(run_dir, json.loads((run_dir / RESULT_FILE).read_text()))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config_path, run_config)
    return _train_loop(
        request, algorithm_cls, config, profile, dataset, run_dir, run_config, on_evaluation, on_checkpoint
    )


def _train_loop(
    request: RunRequest,
    algorithm_cls: type[Algorithm],
    config: Any,
    profile: Any,
    dataset: Dataset,
    run_dir: Path,
    run_config: dict[str, Any],
    on_evaluation: Callable[[int, dict[str, Any]], None] | None,
    on_checkpoint: Callback | None,
) -> RunOutcome:
    suite = get_suite(request.suite)
    device = torch.device(request.device)
    torch.manual_seed(request.seed)
    np.random.seed(request.seed % (2**32))
    algorithm = algorithm_cls(dataset.spec, config, device)
    sampler = Sampler(dataset, seed=request.seed, device=device)
    metrics_path = run_dir / METRICS_FILE
    checkpoint_path = run_dir / CHECKPOINT_FILE
    start_step, elapsed = 0, 0.0
    # Sums and counts per loss: a multi-phase algorithm logs different losses in each phase.
    loss_sums: dict[str, float] = {}
    loss_counts: dict[str, int] = {}
    last_eval: dict[str, Any] | None = None
    if checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        try:
            algorithm.load_state_dict(checkpoint["algorithm"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise MarlbenchError(
                f"{checkpoint_path}: field 'algorithm' does not fit this version of {request.algo} "
                f"({type(error).__name__}: {str(error).splitlines()[0]}); it was saved by another "
                "marlbench version. Rerun with --overwrite to start this run afresh."
            ) from error
        sampler.load_state_dict(checkpoint["sampler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        np.random.set_state(checkpoint["numpy_rng"])
        start_step, elapsed = checkpoint["step"], checkpoint["elapsed"]
        loss_sums, loss_counts, last_eval = checkpoint["loss_sums"], checkpoint["loss_counts"], checkpoint["last_eval"]
    _truncate_metrics(metrics_path, start_step)
    env_options = dataset.meta.get("env_options", {})
    evaluator = _Evaluator(lambda n: suite.make_env(request.task, n, **env_options))
    show_progress = sys.stderr.isatty() if request.progress is None else request.progress
    progress = _progress_bar(show_progress, profile.steps, start_step, run_dir)
    batch_size = profile.batch_size or config.batch_size
    # Losses may be 0-d tensors. On the CPU reading them costs nothing, so a non-finite
    # loss is caught at its step; on an accelerator they are read only when logging.
    check_every_step = device.type == "cpu"
    started = time.monotonic() - elapsed
    status, diverged_step = "completed", None
    # A train line is also written at the last step of each phase, so every phase shows in
    # metrics.jsonl however short the run: {step: name of the phase it ends}.
    phase_ends = _phase_ends(algorithm.phase_starts(), profile.steps)
    try:
        for step in range(start_step + 1, profile.steps + 1):
            losses = algorithm.update(sampler.sample(batch_size), step)
            for key, value in losses.items():
                loss_sums[key] = loss_sums.get(key, 0.0) + value
                loss_counts[key] = loss_counts.get(key, 0) + 1
            logging = step % profile.log_every == 0 or step in phase_ends
            if (check_every_step or logging) and not all(math.isfinite(float(v)) for v in loss_sums.values()):
                status, diverged_step = "diverged", step
                _append_metrics(metrics_path, {"step": step, "kind": "diverged", **_finite_or_text(losses)})
                break
            if logging:
                means = {key: float(total) / loss_counts[key] for key, total in loss_sums.items()}
                phase = _phase_at(algorithm.phase_starts(), step)
                _append_metrics(metrics_path, {"step": step, "kind": "train", "phase": phase, **means})
                loss_sums, loss_counts = {}, {}
            if step % profile.eval_every == 0 or step == profile.steps:
                episodes = profile.final_eval_episodes if step == profile.steps else profile.eval_episodes
                last_eval = evaluator(algorithm, episodes, evaluation_seed(request.seed, step)).to_dict()
                _append_metrics(metrics_path, {"step": step, "kind": "eval", **last_eval})
                if on_evaluation is not None:
                    on_evaluation(step, last_eval)
            if step % profile.checkpoint_every == 0 or step == profile.steps:
                _save_checkpoint(
                    checkpoint_path,
                    {
                        "step": step,
                        "elapsed": time.monotonic() - started,
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
        "steps": profile.steps if status == "completed" else diverged_step,
        "status": status,
        "diverged_step": diverged_step,
        "final": last_eval if status == "completed" else None,
        "wall_time_s": round(time.monotonic() - started, 3),
        "config": run_config,
    }
    write_json_atomic(run_dir / RESULT_FILE, result)
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

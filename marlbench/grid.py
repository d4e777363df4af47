"""Fan a benchmark file out on Ray Tune: one trial per algorithm x instance x variant x seed.

Each trial is an ordinary ``marlbench run`` (:func:`marlbench.train.train`) writing its
run directory under ``<results>/<profile>/`` (one tree per profile, so a smoke grid never
collides with a standard one); the report reads those directories, so results do not
depend on Ray, and Ray's own experiment directory (``storage``) only serves to restore
an interrupted grid. Seeds are an explicit grid axis next to the cell (algorithm,
instance, variant) axis.

Resuming is two-layered: rerunning the same command restores the Tune experiment
(``Tuner.restore``: finished trials stay finished, unfinished and errored ones run
again), and a trial whose run directory already holds a completed result with the same
config returns at once (``train`` checks ``config.json``); an unfinished run continues
from its own checkpoint.

Before anything runs, :func:`plan_grid` works out what cannot run here — an algorithm
that is not implemented, a suite that is not installed (StarCraft II), a missing dataset
— and says how to get it; the grid runs the rest and fails only when nothing can run.
The plan, with every algorithm's column heading and order, is written beside the results
(:mod:`marlbench.plan`), so that the report needs no registry.
On a Ray cluster (``address``), :func:`check_cluster_paths` then makes sure that every node
writes the results directory and reads the datasets before the first trial starts.

Each trial runs with as many torch threads as it has Ray CPUs (``cpus_per_trial``, default
1), so parallel trials do not oversubscribe the cores.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marlbench import __version__
from marlbench.algorithm import Algorithm, all_algorithms
from marlbench.benchmark import Benchmark, Instance, Variant
from marlbench.errors import MarlbenchError, RunDirectoryError, require
from marlbench.plan import (
    MISSING,
    NOT_APPLICABLE,
    NOT_AVAILABLE,
    NOT_IMPLEMENTED,
    RUN,
    AlgorithmEntry,
    CellKey,
    CellPlan,
    PlanFile,
    plan_path,
    write_plan,
)
from marlbench.runlock import storage_errors
from marlbench.suites import Suite, all_suites
from marlbench.workspace import Workspace, dataset_root


@dataclass(frozen=True)
class Trial:
    algo: str
    instance: Instance
    variant: Variant

    def to_config(self) -> dict[str, Any]:
        suite, task, quality = self.instance
        return {
            "algo": self.algo,
            "suite": suite,
            "task": task,
            "quality": quality,
            "variant_label": self.variant.label,
            "overrides": dict(self.variant.overrides),
        }


@dataclass
class GridPlan:
    cells: list[Trial]
    """Every (algorithm, instance, variant) that will run, each once per seed."""
    seeds: tuple[int, ...]
    statuses: list[CellPlan] = field(default_factory=list)
    """Every algorithm x instance cell with its status (``run`` or why it cannot run here)."""
    problems: list[str] = field(default_factory=list)
    """What is missing here and how to get it, one line each."""
    to_generate: list[Instance] = field(default_factory=list)
    algorithms: list[AlgorithmEntry] = field(default_factory=list)
    """The benchmark's algorithms in column order, with their headings."""

    @property
    def n_trials(self) -> int:
        return len(self.cells) * len(self.seeds)

    @property
    def cell_status(self) -> dict[CellKey, str]:
        """What the report shows in a cell that is not run: ``n/a``, ``not implemented``, ``not run: …``."""
        return {(cell.algo, cell.instance): text for cell in self.statuses if (text := cell.report_status) is not None}

    def to_file(self, benchmark: Benchmark) -> PlanFile:
        """The plan file written beside the results (:mod:`marlbench.plan`)."""
        return PlanFile(
            benchmark=benchmark.name,
            benchmark_file=str(benchmark.path),
            profile=benchmark.profile,
            algorithms=list(self.algorithms),
            instances=list(benchmark.instances),
            cells=list(self.statuses),
            problems=list(self.problems),
            planned_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            host=socket.gethostname(),
            marlbench_version=__version__,
        )


def _dataset_hint(suite: Suite, instance: Instance) -> str:
    suite_name, task, quality = instance
    where = f"--suite {suite_name} --task {task} --quality {quality}"
    ways = []
    if (task, quality) in suite.download_sources():
        ways.append(f"marlbench data download {where}")
    if suite.can_generate(task, quality):
        ways.append(f"marlbench data generate {where}")
    ways.append(f"marlbench data import FORMAT PATH {where}")
    return " or ".join(f"`{way}`" for way in ways)


def algorithm_entry(name: str, cls: type[Algorithm] | None) -> AlgorithmEntry:
    """An algorithm's column heading and order (an unregistered name: itself, last)."""
    if cls is None:
        return AlgorithmEntry(name, name, registered=False)
    return AlgorithmEntry(name, getattr(cls, "display_name", name), cls.column_order)


def benchmark_algorithms(benchmark: Benchmark) -> list[AlgorithmEntry]:
    """The benchmark's algorithms with their headings: its list in its order, or for ``all``
    every registered algorithm by ``column_order``, then name."""
    registered = all_algorithms()
    if benchmark.algorithms is not None:
        return [algorithm_entry(name, registered.get(name)) for name in benchmark.algorithms]
    return sorted((algorithm_entry(name, cls) for name, cls in registered.items()), key=AlgorithmEntry.sort_key)


def plan_grid(benchmark: Benchmark, data: Path, generate_missing: bool = False) -> GridPlan:
    """Which trials run, and for every grid cell that cannot run here, why. ``data`` is the
    resolved data root (:attr:`Workspace.data`)."""
    registered = all_algorithms()
    suites = all_suites()
    plan = GridPlan(cells=[], seeds=benchmark.seeds, algorithms=benchmark_algorithms(benchmark))
    names = [entry.name for entry in plan.algorithms]
    static_status = {(c.algo, c.instance): c for c in static_cell_plans(benchmark)}  # whatever this machine holds
    missing_algorithms = [name for name in names if name not in registered]
    if missing_algorithms:
        plan.problems.append(
            f"not implemented in this installation (reported as such): {', '.join(missing_algorithms)}"
        )
    for instance in benchmark.instances:
        suite_name, task, quality = instance
        blocked: tuple[str, str] | None = None  # (status, what is missing and how to get it)
        suite = suites.get(suite_name)
        if suite is None:
            blocked = (
                NOT_AVAILABLE,
                f"suite {suite_name} is not available (installed suites: {', '.join(sorted(suites))})",
            )
        elif (reason := suite.unavailable_reason()) is not None:
            blocked = NOT_AVAILABLE, f"suite {suite_name} cannot run here: {reason}"
        else:
            suite.check_quality(task, quality)
            has_dataset = (dataset_root(data, suite_name, task, quality) / "meta.json").exists()
            if not has_dataset:
                # Generated once by the driver, not by concurrent trials of the same dataset.
                if suite.generates_on_the_fly or (generate_missing and suite.can_generate(task, quality)):
                    plan.to_generate.append(instance)
                else:
                    hint = _dataset_hint(suite, instance)
                    blocked = MISSING, f"no dataset for {'/'.join(instance)}; get it with {hint}"
        if blocked is not None and blocked[1] not in plan.problems:
            plan.problems.append(blocked[1])
        for name in names:
            cell = static_status.get((name, instance))  # n/a and not implemented hold on any machine
            if cell is None and blocked is not None:
                cell = CellPlan(name, instance, blocked[0], blocked[1].split(";")[0])
            if cell is None:
                cell = CellPlan(name, instance, RUN)
                plan.cells += [Trial(name, instance, variant) for variant in benchmark.variants]
            plan.statuses.append(cell)
    return plan


def write_grid_plan(benchmark: Benchmark, plan: GridPlan, workspace: Workspace) -> Path:
    """Write the plan beside the benchmark's results, atomically; returns its path."""
    results = workspace.profile_results(benchmark.profile)
    path = plan_path(results, benchmark.name)
    with storage_errors(results):
        write_plan(path, plan.to_file(benchmark))
    return path


def _trial_config_hash(configs: list[dict[str, Any]], seeds: tuple[int, ...], profile: str) -> str:
    text = json.dumps({"cells": configs, "seeds": list(seeds), "profile": profile}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_trial(config: Mapping[str, Any]) -> None:
    """One Tune trial: a ``marlbench run`` that reports each evaluation to Tune."""
    from ray import tune

    from marlbench.train import RunRequest, train

    cell, settings = config["cell"], config["settings"]
    request = RunRequest(
        algo=cell["algo"],
        suite=cell["suite"],
        task=cell["task"],
        quality=cell["quality"],
        seed=int(config["seed"]),
        profile=settings["profile"],
        overrides=dict(cell["overrides"]),
        results=Path(settings["results"]),
        data=Path(settings["data"]),
        device=settings["device"],
        progress=False,
        threads=int(config["threads"]),
    )

    def on_evaluation(step: int, metrics: dict[str, Any]) -> None:
        tune.report({"step": step, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}})

    outcome = train(request, on_evaluation=on_evaluation)
    final = outcome.result.get("final") or {}
    tune.report(
        {
            "step": outcome.result.get("steps"),
            "status": outcome.result.get("status"),
            "run_dir": str(outcome.run_dir),
            **{k: v for k, v in final.items() if isinstance(v, (int, float))},
        }
    )


def trial_dirname(trial: Any) -> str:
    """Ray's directory for a trial, readable: ``bc-xor-ab-default-seed0-<id>``."""
    cell = trial.config["cell"]
    variant = Variant(cell["variant_label"], cell["overrides"]).name
    return f"{cell['algo']}-{cell['task']}-{cell['quality']}-{variant}-seed{trial.config['seed']}-{trial.trial_id}"


@dataclass
class GridOptions:
    workspace: Workspace
    """The data and results roots, resolved by the caller (:meth:`Workspace.resolve`)."""
    storage: Path | str | None = None
    """Ray's experiment directory (a shared path or bucket URI on a cluster); default ``ray_results``
    beside the results root (never inside it: Ray writes its own ``result.json`` files)."""
    cpus_per_trial: float = 1.0
    """Ray CPUs of a trial; its torch threads are this, rounded down, at least 1."""
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 1
    address: str | None = None
    generate_missing: bool = False
    generate_budget: int | None = None
    generate_episodes: int | None = None
    plan_only: bool = False
    """Plan and write the plan file, run nothing."""


def completed_trials(plan: GridPlan, settings: Mapping[str, Any]) -> int:
    """Planned trials whose run directory holds a completed (or diverged: also final) result."""
    from marlbench.train import RESULT_FILE, RunRequest, run_directory

    done = 0
    for trial in plan.cells:
        for seed in plan.seeds:
            cell = trial.to_config()
            request = RunRequest(
                algo=trial.algo,
                suite=cell["suite"],
                task=cell["task"],
                quality=cell["quality"],
                seed=seed,
                overrides=dict(trial.variant.overrides),
                results=Path(settings["results"]),
            )
            path = run_directory(request) / RESULT_FILE
            if path.exists() and json.loads(path.read_text()).get("status") in ("completed", "diverged"):
                done += 1
    return done


@dataclass
class GridSummary:
    plan: GridPlan
    experiment: str
    finished: int
    errored: list[str]

    @property
    def complete(self) -> bool:
        return self.finished == self.plan.n_trials


def _generate_task(
    suite_name: str,
    task: str,
    qualities: list[str],
    data: str,
    budget: int | None,
    episodes: int | None,
    torch_threads: int | None = None,
) -> None:
    """Every missing quality of one task, in order (they share the task's behaviour policy);
    ``data`` is the resolved data root."""
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    suite = all_suites()[suite_name]
    for quality in qualities:
        suite.generate(task, quality, dataset_root(data, suite_name, task, quality), budget=budget, episodes=episodes)


def generate_missing(to_generate: list[Instance], options: GridOptions, say=print) -> None:
    """Generate the missing datasets: tasks whose suite trains behaviour policies run in
    parallel worker processes (one per core), each task's qualities in order."""
    workspace = options.workspace
    by_task: dict[tuple[str, str], list[str]] = {}
    for suite_name, task, quality in to_generate:
        say(f"grid: generating {suite_name}/{task}/{quality} -> {workspace.dataset_root(suite_name, task, quality)}")
        by_task.setdefault((suite_name, task), []).append(quality)
    slow = {key: qualities for key, qualities in by_task.items() if not all_suites()[key[0]].generates_on_the_fly}
    data, budget, episodes = str(workspace.data), options.generate_budget, options.generate_episodes
    for (suite_name, task), qualities in by_task.items():
        if (suite_name, task) not in slow or len(slow) == 1:
            _generate_task(suite_name, task, qualities, data, budget, episodes)
    if len(slow) < 2:
        return
    # Plain subprocesses of this interpreter (never fork a process that may run torch
    # threads; multiprocessing's spawn would re-import the caller's __main__).
    pending = [
        {"suite_name": suite, "task": task, "qualities": qualities, "data": data, "budget": budget,
         "episodes": episodes, "torch_threads": 1}
        for (suite, task), qualities in slow.items()
    ]  # fmt: skip
    running: list[tuple[subprocess.Popen, dict[str, Any]]] = []
    failed: list[str] = []
    workers = min(len(pending), os.cpu_count() or 1)
    while pending or running:
        while pending and len(running) < workers:
            args = pending.pop(0)
            running.append((subprocess.Popen([sys.executable, "-c", GENERATE_WORKER, json.dumps(args)]), args))
        process, args = running.pop(0)
        if process.wait() != 0:
            failed.append(f"{args['suite_name']}/{args['task']} (exit code {process.returncode}; its error is above)")
    if failed:
        raise MarlbenchError(f"generating datasets failed for {', '.join(failed)}")


GENERATE_WORKER = (
    "import json, sys; from marlbench.grid import _generate_task; _generate_task(**json.loads(sys.argv[1]))"
)


def run_grid(benchmark: Benchmark, options: GridOptions, say=print) -> GridSummary:
    """Plan, write the plan beside the results, say what cannot run, generate missing datasets if
    asked, then run the trials on Ray Tune."""
    workspace = options.workspace
    plan = plan_grid(benchmark, workspace.data, options.generate_missing)
    for problem in plan.problems:
        say(f"grid: {problem}")
    plan_file = write_grid_plan(benchmark, plan, workspace)
    if options.plan_only:
        say(f"grid: {plan.n_trials} trials planned, none run (--plan-only); plan written to {plan_file}")
        return GridSummary(plan, "", 0, [])
    if plan.n_trials == 0:
        raise MarlbenchError(f"{benchmark.path}: nothing can run here; see the lines above for what is missing")
    generate_missing(plan.to_generate, options, say)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    require("ray", "tune", "the benchmark grid")
    import ray
    from ray import tune

    absolute = workspace.absolute()
    results = absolute.profile_results(benchmark.profile)
    storage = str(options.storage or absolute.results.parent / "ray_results")
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    configs = [trial.to_config() for trial in plan.cells]
    name = f"{benchmark.name}-{benchmark.profile}-{_trial_config_hash(configs, plan.seeds, benchmark.profile)}"
    settings = {
        "profile": benchmark.profile,
        "results": str(results),
        "data": str(absolute.data),
        "device": "cuda" if options.gpus_per_trial > 0 else "cpu",
    }
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, configure_logging=False)
    if options.address is not None:
        datasets = sorted({absolute.dataset_root(*trial.instance) for trial in plan.cells})
        check_cluster_paths(results, datasets)
        say(f"grid: every node of the Ray cluster reads the datasets and writes {results}")
    trainable = tune.with_resources(run_trial, {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
    path = f"{storage.rstrip('/')}/{name}"
    say(
        f"grid: {plan.n_trials} trials ({len(plan.cells)} algorithm x instance x variant cells, seeds "
        f"{list(plan.seeds)}), profile {benchmark.profile}; Ray experiment {path}"
    )
    if tune.Tuner.can_restore(path):
        say("grid: restoring the interrupted grid (finished trials are kept)")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, restart_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={
                "cell": tune.grid_search(configs),
                "seed": tune.grid_search(list(plan.seeds)),
                "settings": settings,
                "threads": max(1, int(options.cpus_per_trial)),
            },
            tune_config=tune.TuneConfig(
                max_concurrent_trials=options.max_concurrent,
                reuse_actors=True,
                trial_dirname_creator=trial_dirname,
                trial_name_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                verbose=0,
            ),
        )
    grid = tuner.fit()
    errored = [str(result.error).splitlines()[0] for result in grid if result.error is not None]
    finished = completed_trials(plan, settings)
    say(
        f"grid: {finished} of {plan.n_trials} trials have a completed run, {len(errored)} failed; "
        f"run directories under {results}"
    )
    for line in errored:
        say(f"grid: failed trial: {line}")
    if finished + len(errored) < plan.n_trials:
        say("grid: interrupted; run the same command again to continue where it stopped")
    return GridSummary(plan, path, finished, errored)


PROBE_TIMEOUT_S = 120


def check_cluster_paths(results: Path, datasets: list[Path], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Before the first trial on a Ray cluster: one task on every live node reads a probe file
    the driver wrote into ``results``, writes beside it, and reads every dataset; a node that
    cannot (another file system, no mount, no permission) stops the grid with what to do."""
    import ray
    from ray.exceptions import GetTimeoutError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from marlbench.cluster_probe import probe_paths
    from marlbench.runlock import storage_errors

    token = os.urandom(16).hex()
    token_path = results / f".marlbench-probe-{token}"
    with storage_errors(results):
        results.mkdir(parents=True, exist_ok=True)
        token_path.write_text(token)
    probe = ray.remote(num_cpus=0, max_retries=0)(probe_paths)
    nodes = [node for node in ray.nodes() if node["Alive"]]
    pending = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            str(token_path), token, [str(root) for root in datasets]
        )
        for node in nodes
    ]
    try:
        problems = [answer for answer in ray.get(pending, timeout=timeout_s) if answer is not None]
    except GetTimeoutError:
        problems = [f"not every one of the {len(nodes)} nodes answered the path check within {timeout_s:.0f} s"]
    finally:
        token_path.unlink(missing_ok=True)
    if problems:
        raise RunDirectoryError(
            results,
            "every node of the Ray cluster to write here and to read the grid's datasets",
            "\n  " + "\n  ".join(problems),
            "Put the results and data directories on a file system every node mounts at the same path (NFS or "
            "similar) and pass those paths as --results and --data (Ray's --storage may be a bucket URI; these "
            "may not)",
        )


def static_cell_plans(benchmark: Benchmark) -> list[CellPlan]:
    """The cells whose status the installation knows without datasets or environments:
    ``not implemented`` (no such algorithm registered) and ``n/a`` (the task's action space, from
    the suite's task table, is not the algorithm's)."""
    registered = all_algorithms()
    suites = all_suites()
    names = list(registered) if benchmark.algorithms is None else list(benchmark.algorithms)
    cells = []
    for instance in benchmark.instances:
        suite = suites.get(instance[0])
        task = suite.tasks().get(instance[1]) if suite is not None else None
        for name in names:
            if name not in registered:
                cells.append(CellPlan(name, instance, NOT_IMPLEMENTED, f"no algorithm {name!r} is registered"))
            elif task is not None and task.spec.action_type not in registered[name].action_types:
                supported = " and ".join(registered[name].action_types)
                reason = f"{name} supports {supported} actions; {instance[0]}/{instance[1]} has {task.spec.action_type}"
                cells.append(CellPlan(name, instance, NOT_APPLICABLE, reason))
    return cells


def report_cell_status(benchmark: Benchmark) -> dict[CellKey, str]:
    """:func:`static_cell_plans` as the report shows them (``not implemented``, ``n/a``)."""
    return {(cell.algo, cell.instance): cell.status for cell in static_cell_plans(benchmark)}

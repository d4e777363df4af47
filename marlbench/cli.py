"""The ``marlbench`` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from marlbench.errors import ConfigError, MarlbenchError


def _cmd_algos(args: argparse.Namespace) -> int:
    from marlbench.algorithm import all_algorithms

    for name, cls in all_algorithms().items():
        print(f"{name:12s} {cls.title}")
        print(f"{'':12s} actions: {', '.join(cls.action_types)}  ({cls.__module__})")
        hints = typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            annotation = getattr(hints[f.name], "__name__", str(hints[f.name]))
            print(f"{'':14s}{f.name} = {default!r}  ({annotation})")
        if cls.dataset_overrides:
            print(f"{'':12s} per-dataset overrides: {dict(cls.dataset_overrides)}")
    return 0


def _cmd_suites(args: argparse.Namespace) -> int:
    from marlbench.suites import all_suites

    for name, suite in all_suites().items():
        reason = suite.unavailable_reason()
        print(f"{name}: {suite.description}")
        print(f"  runs here: {'yes' if reason is None else 'no - ' + reason}")
        print(f"  requirements: {suite.requirements}")
        for task in suite.tasks().values():
            spec = task.spec
            actions = f"{spec.n_actions} discrete" if spec.discrete else f"{spec.action_dim}-d continuous"
            dims = f"agents {spec.n_agents}, obs {spec.obs_dim}, state {spec.state_dim}"
            print(f"  {task.name:10s} {dims}, actions {actions}")
            print(f"  {'':10s} qualities: {', '.join(task.qualities)}  ({task.description})")
    return 0


def _resolve_dataset_path(args: argparse.Namespace) -> Path:
    from marlbench.workspace import Workspace

    if args.path is not None:
        return Path(args.path)
    if not (args.suite and args.task and args.quality):
        raise ConfigError("give a dataset directory, or --suite, --task and --quality")
    return Workspace.resolve(data=args.data).dataset_root(args.suite, args.task, args.quality)


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from marlbench.data.card import card, format_card
    from marlbench.suites import get_suite
    from marlbench.workspace import Workspace

    suite = get_suite(args.suite)
    suite.check_quality(args.task, args.quality)
    if not suite.can_generate(args.task, args.quality):
        raise ConfigError(f"suite {args.suite} cannot generate {args.task}/{args.quality}")
    root = Workspace.resolve(data=args.data).dataset_root(args.suite, args.task, args.quality)
    if (root / "meta.json").exists() and not args.overwrite:
        raise ConfigError(f"{root} already holds a dataset; pass --overwrite to replace it")
    dataset = suite.generate(
        args.task,
        args.quality,
        root,
        seed=args.seed,
        episodes=args.episodes,
        budget=args.budget,
        overwrite=args.overwrite,
    )
    print(format_card(card(dataset)))
    return 0


def _cmd_data_import(args: argparse.Namespace) -> int:
    from marlbench.data.card import card, format_card
    from marlbench.data.importers import import_dataset
    from marlbench.suites import get_suite
    from marlbench.workspace import Workspace

    get_suite(args.suite).check_quality(args.task, args.quality)
    root = Workspace.resolve(data=args.data).dataset_root(args.suite, args.task, args.quality)
    dataset = import_dataset(
        args.format,
        args.path,
        root,
        suite=args.suite,
        task=args.task,
        quality=args.quality,
        overwrite=args.overwrite,
        clip_actions=args.clip_actions,
    )
    print(format_card(card(dataset)))
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from marlbench.data.card import card, format_card
    from marlbench.data.download import download_and_import
    from marlbench.suites import get_suite
    from marlbench.workspace import Workspace

    get_suite(args.suite).check_quality(args.task, args.quality)
    dataset = download_and_import(
        args.suite,
        args.task,
        args.quality,
        data_dir=Workspace.resolve(data=args.data).data,
        cache_dir=args.cache,
        base_url=args.base_url,
        overwrite=args.overwrite,
    )
    print(format_card(card(dataset)))
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from marlbench.data.card import card, format_card
    from marlbench.data.store import Dataset

    info = card(Dataset.open(_resolve_dataset_path(args)))
    print(json.dumps(info, indent=2) if args.json else format_card(info))
    return 0


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from marlbench.data.store import Dataset

    dataset = Dataset.open(_resolve_dataset_path(args))
    dataset.verify()
    stats = dataset.meta["statistics"]
    print(
        f"OK {dataset.root}: {len(dataset.meta['files'])} files match their sha256, shapes and dtypes; "
        f"no NaN/inf; row invariants hold ({stats['episodes']} episodes, {stats['transitions']} transitions)"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from marlbench.algorithm import load_yaml_overrides, parse_set_pairs
    from marlbench.train import RunRequest, train
    from marlbench.workspace import Workspace

    workspace = Workspace.resolve(data=args.data, results=args.results)
    overrides = load_yaml_overrides(args.config) if args.config else {}
    overrides.update(parse_set_pairs(args.set))
    request = RunRequest(
        algo=args.algo,
        suite=args.suite,
        task=args.task,
        quality=args.quality,
        seed=args.seed,
        profile=args.profile,
        overrides=overrides,
        variant=args.variant,
        results=workspace.results,
        data=workspace.data,
        dataset_path=args.dataset,
        device=args.device,
        overwrite=args.overwrite,
        steps=args.steps,
        threads=args.threads,
        break_lock=args.break_lock,
    )
    outcome = train(request)
    result = outcome.result
    print(f"run directory: {outcome.run_dir}")
    if result["status"] == "diverged":
        print(f"status: diverged at step {result['diverged_step']} ({result.get('diverged_message')})")
        return 1
    final = result["final"]
    line = f"final return: {final['return_mean']:.4f} ± {final['return_std']:.4f} over {final['episodes']} episodes"
    if final.get("win_rate") is not None:
        line += f", win rate {final['win_rate']:.3f}"
    if final.get("expected_return") is not None:
        line += f", expected return {final['expected_return']:.4f}"
    print(line)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from marlbench.demo import run_demo
    from marlbench.workspace import Workspace

    workspace = Workspace.resolve(data=args.data, results=args.results)
    written = run_demo(args.file, workspace, args.out, args.max_concurrent)
    report = next(path for path in written if path.suffix == ".md")
    print(report.read_text())
    print(f"written to {report}")
    return 0


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, found {text!r}") from None


def _load_benchmark(args: argparse.Namespace):
    from marlbench.benchmark import Benchmark

    return Benchmark.load(args.file).with_overrides(profile=args.profile, seeds=args.seeds)


def _cmd_grid(args: argparse.Namespace) -> int:
    from marlbench.grid import GridOptions, run_grid
    from marlbench.workspace import Workspace

    options = GridOptions(
        workspace=Workspace.resolve(data=args.data, results=args.results),
        storage=args.storage,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        max_failures=args.max_failures,
        address=args.address,
        generate_missing=args.generate_missing,
        generate_budget=args.generate_budget,
        generate_episodes=args.generate_episodes,
        plan_only=args.plan_only,
    )
    summary = run_grid(_load_benchmark(args), options)
    return 0 if summary.complete or args.plan_only else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from marlbench.report.build import write_report
    from marlbench.workspace import Workspace

    benchmark = _load_benchmark(args)
    workspace = Workspace.resolve(data=args.data, results=args.results)
    written = write_report(
        benchmark,
        workspace.profile_results(benchmark.profile),
        args.out,
        formats=tuple(part for part in args.format.split(",") if part),
        csv=args.csv,
        figures=not args.no_figures,
    )
    for path in written:
        print(f"written: {path}")
    return 0


def _add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a benchmark file, e.g. benchmarks/table3.yaml")
    parser.add_argument("--profile", default=None, help="replace the file's profile (smoke, standard, paper)")
    parser.add_argument("--seeds", type=_seed_list, default=None, help="replace the file's seeds, e.g. 0,1")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="run directories go under <results>/<profile>/ (default: $MARLBENCH_RESULTS or results/)",
    )
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $MARLBENCH_DATA or data/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marlbench", description="Offline cooperative multi-agent RL benchmark")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("algos", help="registered algorithms, their action spaces and config fields").set_defaults(
        handler=_cmd_algos
    )
    commands.add_parser("suites", help="suites, tasks, qualities and whether each runs here").set_defaults(
        handler=_cmd_suites
    )

    data = commands.add_parser("data", help="generate, inspect and verify datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    generate = data_commands.add_parser("generate", help="generate a behaviour dataset")
    generate.add_argument("--suite", required=True)
    generate.add_argument("--task", required=True)
    generate.add_argument("--quality", required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--episodes", type=int, default=None, help="dataset size (default: the paper's)")
    generate.add_argument("--budget", type=int, default=None, help="online env steps for the behaviour policy")
    generate.add_argument("--data", type=Path, default=None, help="data directory (default: $MARLBENCH_DATA or data/)")
    generate.add_argument("--overwrite", action="store_true")
    generate.set_defaults(handler=_cmd_data_generate)
    importer = data_commands.add_parser("import", help="convert a dataset file of the papers into the store format")
    importer.add_argument("format", help="omiga-hdf5, comadice-npz or omar-npy")
    importer.add_argument("path", type=Path, help="the file (or, for omar-npy, the seed_<k>_data folder)")
    importer.add_argument("--suite", required=True)
    importer.add_argument("--task", required=True)
    importer.add_argument("--quality", required=True)
    importer.add_argument("--data", type=Path, default=None, help="data directory (default: $MARLBENCH_DATA or data/)")
    importer.add_argument("--overwrite", action="store_true")
    importer.add_argument(
        "--clip-actions", action="store_true", help="clip actions outside [-1, 1] instead of refusing"
    )
    importer.set_defaults(handler=_cmd_data_import)
    download = data_commands.add_parser("download", help="download the papers' dataset file, verify it and import it")
    download.add_argument("--suite", required=True)
    download.add_argument("--task", required=True)
    download.add_argument("--quality", required=True)
    download.add_argument("--data", type=Path, default=None, help="data directory (default: $MARLBENCH_DATA or data/)")
    download.add_argument(
        "--cache", type=Path, default=None, help="where downloads are kept (default: <data>/_downloads)"
    )
    download.add_argument("--base-url", default=None, help="a mirror serving the same file names")
    download.add_argument("--overwrite", action="store_true")
    download.set_defaults(handler=_cmd_data_download)
    for name, handler, text in (
        ("info", _cmd_data_info, "dataset card"),
        ("verify", _cmd_data_verify, "check hashes, shapes, dtypes, NaN/inf and row invariants"),
    ):
        sub = data_commands.add_parser(name, help=text)
        sub.add_argument("path", nargs="?", type=Path, help="dataset directory")
        sub.add_argument("--suite")
        sub.add_argument("--task")
        sub.add_argument("--quality")
        sub.add_argument("--data", type=Path, default=None)
        if name == "info":
            sub.add_argument("--json", action="store_true", help="print the card as JSON")
        sub.set_defaults(handler=handler)

    run = commands.add_parser("run", help="train and evaluate one algorithm on one dataset with one seed")
    run.add_argument("--algo", required=True)
    run.add_argument("--suite", required=True)
    run.add_argument("--task", required=True)
    run.add_argument("--quality", required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--profile", default="standard", help="smoke, standard (default) or paper")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    run.add_argument("--config", type=Path, default=None, help="YAML file of config fields")
    run.add_argument("--variant", default=None, help="name of this configuration (default: from the overrides)")
    run.add_argument("--steps", type=int, default=None, help="override the profile's training steps")
    run.add_argument(
        "--results", type=Path, default=None, help="results directory (default: $MARLBENCH_RESULTS or results/)"
    )
    run.add_argument("--data", type=Path, default=None, help="data directory (default: $MARLBENCH_DATA or data/)")
    run.add_argument("--dataset", type=Path, default=None, help="an explicit dataset directory")
    run.add_argument("--device", default="cpu")
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch/BLAS threads of this run (default: torch's count, at most the available cores)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start this run afresh, replacing what its directory holds (another config, an unusable checkpoint)",
    )
    run.add_argument(
        "--break-lock", action="store_true", help="take over the run directory's lock even from a live run"
    )
    run.set_defaults(handler=_cmd_run)

    grid = commands.add_parser("grid", help="run a benchmark file's algorithm x instance x seed grid on Ray Tune")
    _add_benchmark_arguments(grid)
    grid.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="Ray CPUs of a trial, also its torch threads (at least 1)"
    )
    grid.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU between trials")
    grid.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: as resources allow)")
    grid.add_argument("--max-failures", type=int, default=1, help="retries of a failed trial")
    grid.add_argument(
        "--storage",
        default=None,
        help="Ray's experiment directory or bucket URI (default: ray_results/ beside --results)",
    )
    grid.add_argument(
        "--address",
        default=None,
        help="join a running Ray cluster, e.g. auto or ray://host:10001; every node must see --results and --data",
    )
    grid.add_argument(
        "--generate-missing", action="store_true", help="generate missing datasets where the suite can (MaMuJoCo)"
    )
    grid.add_argument("--generate-budget", type=int, default=None, help="behaviour-training env steps when generating")
    grid.add_argument("--generate-episodes", type=int, default=None, help="dataset size when generating")
    grid.add_argument(
        "--plan-only",
        action="store_true",
        help="plan the grid and write its plan beside the results (what the report reads), run nothing",
    )
    grid.set_defaults(handler=_cmd_grid)

    report = commands.add_parser("report", help="tables, tests and figures of a benchmark file's results")
    _add_benchmark_arguments(report)
    report.add_argument("--format", default="md,tex", help="comma-separated: md, tex")
    report.add_argument("--out", type=Path, default=Path("reports"))
    report.add_argument("--csv", action="store_true", help="also write the per-run results as CSV")
    report.add_argument("--no-figures", action="store_true")
    report.set_defaults(handler=_cmd_report)

    demo = commands.add_parser("demo", help="every registered algorithm on the matrix suite; writes reports/demo.md")
    demo.add_argument("--file", type=Path, default=Path("benchmarks/demo.yaml"))
    demo.add_argument(
        "--results", type=Path, default=None, help="results directory (default: $MARLBENCH_RESULTS or results/)"
    )
    demo.add_argument("--out", type=Path, default=Path("reports"), help="the report goes to <out>/<name>.md")
    demo.add_argument("--data", type=Path, default=None)
    demo.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: one per core)")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except MarlbenchError as error:
        print(f"marlbench: error: {error}", file=sys.stderr)
        return error.exit_code
    except FileExistsError as error:
        print(f"marlbench: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""A markdown report of hand-started runs beside their dataset card: each run's final return
and learning curve next to the return of the data it learned from.

Run: python benchmarks/runs_beside_data.py RUN_DIR [RUN_DIR ...] --out reports/NAME.md
     [--title TEXT] [--note TEXT]

Each RUN_DIR is a ``marlbench run`` directory (``.../<algo>/<variant>/seed<k>/``); the
dataset is the one its ``config.json`` names. A run still in progress is reported at its last
evaluation and marked as such. The report is stamped with the commit, machine and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import socket
import subprocess
import sys
from pathlib import Path

from marlbench.data.store import write_text_atomic


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _commit() -> str:
    here = Path(__file__).resolve().parent
    found = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(run_dir: Path) -> dict:
    config = json.loads((run_dir / "config.json").read_text())
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    metrics = _jsonl(run_dir / "metrics.jsonl")
    evals = [line for line in metrics if line["kind"] == "eval"]
    runtime = config.get("runtime", {})
    return {
        "dir": run_dir,
        "algo": config["algo"],
        "steps": config["profile"]["steps"],
        "threads": runtime.get("threads"),
        "dataset": Path(runtime.get("dataset_path") or config["dataset"]["path"]),
        "result": result,
        "evals": evals,
    }


def _run_commit(result: dict | None) -> str:
    """The commit a finished run recorded (``-dirty`` with uncommitted changes)."""
    provenance = (result or {}).get("provenance") or {}
    commit = provenance.get("commit")
    if not commit:
        return "—"
    return commit[:7] + ("-dirty" if provenance.get("dirty") else "")


def _card(dataset: Path) -> dict:
    meta = json.loads((dataset / "meta.json").read_text())
    stats, source = meta["statistics"], meta["source"]
    return {"path": dataset, "stats": stats, "source": source}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def build(run_dirs: list[Path], title: str, note: str) -> str:
    runs = [_run(path) for path in run_dirs]
    cards = {run["dataset"]: _card(run["dataset"]) for run in runs}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"Made on {now} from commit {_commit()} on {socket.gethostname()} ({_cpu()}, {platform.platform()}, "
        f"Python {sys.version.split()[0]}).",
        "",
    ]
    if note:
        lines += [note, ""]
    for path, card in cards.items():
        stats = card["stats"]
        lines += [
            f"Dataset `{path}`: {stats['episodes']:,} episodes, {stats['transitions']:,} transitions, "
            f"episode return {stats['return_mean']:.1f} ± {stats['return_std']:.1f} "
            f"(min {stats['return_min']:.1f}, max {stats['return_max']:.1f}).",
            "",
            "Card source: `" + json.dumps(card["source"], sort_keys=True) + "`",
            "",
        ]
    lines += [
        "## Final return beside the data",
        "",
        "| algorithm | steps | status | final return (episodes) | data return | final − data | wall time | threads "
        "| commit |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        data_return = cards[run["dataset"]]["stats"]["return_mean"]
        result = run["result"]
        if result is not None and result["status"] == "completed":
            final, status = result["final"], "completed"
            wall = f"{result['wall_time_s'] / 60:.0f} min"
        else:
            final = run["evals"][-1] if run["evals"] else None
            status = (result or {}).get("status") or (
                f"in progress (last evaluation at step {final['step']:,})" if final else "no evaluation yet"
            )
            wall = "—"
        score = None if final is None else final["return_mean"]
        episodes = "" if final is None else f" ({final['episodes']})"
        spread = "" if final is None else f" ± {final['return_std']:.1f}"
        delta = None if score is None else score - data_return
        lines.append(
            f"| {run['algo']} | {run['steps']:,} | {status} | {_fmt(score)}{spread}{episodes} | {data_return:.1f} "
            f"| {_fmt(delta)} | {wall} | {run['threads']} | {_run_commit(result)} |"
        )
    steps = sorted({line["step"] for run in runs for line in run["evals"]})
    lines += [
        "",
        "## Learning curves",
        "",
        "Mean return of each evaluation (deterministic policies; 10 episodes, the last one 32).",
        "",
        "| step | " + " | ".join(run["algo"] for run in runs) + " |",
        "|---:|" + "---:|" * len(runs),
    ]
    for step in steps:
        row = []
        for run in runs:
            match = [line["return_mean"] for line in run["evals"] if line["step"] == step]
            row.append(_fmt(match[0]) if match else "")
        lines.append(f"| {step:,} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Runs beside their dataset")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    write_text_atomic(args.out, build(args.runs, args.title, args.note))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

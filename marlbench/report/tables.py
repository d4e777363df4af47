"""Mean and standard deviation over seeds per instance and algorithm, as markdown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

INSTANCE_KEYS = ["suite", "task", "quality"]
METRIC_DESCRIPTIONS = {
    "return_mean": "the mean return of the final evaluation's deterministic episodes",
    "win_rate": "the win rate of the final evaluation's deterministic episodes",
    "expected_return": (
        "on one-step discrete games the exact expected return of the stochastic joint policy "
        "(what the papers' matrix tables report), elsewhere the mean return of the final evaluation's "
        "deterministic episodes"
    ),
}


def score_column(frame: pd.DataFrame, metric: str) -> pd.Series:
    """The metric per run; ``expected_return`` falls back to the sampled return where absent."""
    if metric == "expected_return":
        return frame["expected_return"].fillna(frame["return_mean"])
    return frame[metric]


def summarize(frame: pd.DataFrame, metric: str = "return_mean") -> pd.DataFrame:
    """One row per instance x algorithm x variant: mean, std (population, ddof=0) over
    completed seeds, the number of seeds found and of diverged runs."""
    frame = frame.assign(score=score_column(frame, metric))
    keys = INSTANCE_KEYS + ["algo", "variant"]
    completed = frame[frame["status"] == "completed"]
    stats = completed.groupby(keys)["score"].agg(mean="mean", std=lambda s: float(np.std(s)), seeds="count")
    diverged = frame[frame["status"] == "diverged"].groupby(keys).size().rename("diverged")
    summary = stats.join(diverged, how="outer").reset_index()
    summary["seeds"] = summary["seeds"].fillna(0).astype(int)
    summary["diverged"] = summary["diverged"].fillna(0).astype(int)
    return summary


def markdown_table(
    summary: pd.DataFrame,
    algorithms: Sequence[str],
    instances: Sequence[tuple[str, str, str]],
    not_applicable: set[tuple[str, tuple[str, str, str]]] = frozenset(),
    digits: int = 2,
) -> str:
    """Rows are instances, columns algorithms; the best mean of a row is in bold.

    A cell reads ``mean ± std`` with the seed count when fewer runs than the row's
    maximum were found; ``n/a`` where the algorithm cannot run the task, ``—`` where no
    run was found, and ``diverged (k)`` where every run diverged.
    """
    header = "| dataset | " + " | ".join(algorithms) + " |"
    lines = [header, "|" + "---|" * (len(algorithms) + 1)]
    indexed = summary.set_index(INSTANCE_KEYS + ["algo"])
    for instance in instances:
        means = {
            algo: indexed.loc[instance + (algo,), "mean"]
            for algo in algorithms
            if instance + (algo,) in indexed.index and indexed.loc[instance + (algo,), "seeds"] > 0
        }
        best = max(means.values()) if means else None
        max_seeds = max((int(indexed.loc[instance + (a,), "seeds"]) for a in means), default=0)
        cells = []
        for algo in algorithms:
            key = instance + (algo,)
            if (algo, instance) in not_applicable:
                cells.append("n/a")
            elif key not in indexed.index:
                cells.append("—")
            elif indexed.loc[key, "seeds"] == 0:
                cells.append(f"diverged ({int(indexed.loc[key, 'diverged'])})")
            else:
                row = indexed.loc[key]
                text = f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}"
                if np.isclose(row["mean"], best):
                    text = f"**{text}**"
                if int(row["seeds"]) < max_seeds:
                    text += f" (n={int(row['seeds'])})"
                if row["diverged"]:
                    text += f" ({int(row['diverged'])} diverged)"
                cells.append(text)
        lines.append(f"| {'/'.join(instance[1:])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

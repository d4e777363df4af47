"""Read run directories (``result.json`` files) into a pandas frame, one row per run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RESULT_COLUMNS = [
    "suite",
    "task",
    "quality",
    "algo",
    "variant",
    "seed",
    "profile",
    "status",
    "steps",
    "diverged_step",
    "return_mean",
    "return_std",
    "win_rate",
    "expected_return",
    "episodes",
    "wall_time_s",
    "run_dir",
]


def load_results(results_dir: Path | str) -> pd.DataFrame:
    """Every ``result.json`` below ``results_dir``; a diverged run has NaN scores."""
    rows = []
    for path in sorted(Path(results_dir).rglob("result.json")):
        result = json.loads(path.read_text())
        final = result.get("final") or {}
        rows.append(
            {
                **{key: result.get(key) for key in ("suite", "task", "quality", "algo", "variant", "seed", "profile")},
                "status": result.get("status"),
                "steps": result.get("steps"),
                "diverged_step": result.get("diverged_step"),
                "return_mean": final.get("return_mean"),
                "return_std": final.get("return_std"),
                "win_rate": final.get("win_rate"),
                "expected_return": final.get("expected_return"),
                "episodes": final.get("episodes"),
                "wall_time_s": result.get("wall_time_s"),
                "run_dir": str(path.parent),
            }
        )
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for column in ("return_mean", "return_std", "win_rate", "expected_return", "wall_time_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame

"""Read run directories into pandas frames: one row per run (``result.json``) or one row per
evaluation (the ``kind: eval`` lines of ``metrics.jsonl``).

Both readers need only the files ``marlbench.train`` writes, never torch or an algorithm, so a
grid's results can be reported on any machine that holds the run directories.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

INSTANCE_KEYS = ["suite", "task", "quality"]
RUN_KEYS = INSTANCE_KEYS + ["algo", "variant", "seed"]
SCORE_COLUMNS = ["return_mean", "return_std", "win_rate", "expected_return"]
RESULT_COLUMNS = [
    *RUN_KEYS,
    "profile",
    "status",
    "steps",
    "diverged_step",
    *SCORE_COLUMNS,
    "episodes",
    "wall_time_s",
    "run_dir",
]
CURVE_COLUMNS = [*RUN_KEYS, "profile", "step", *SCORE_COLUMNS, "episodes"]


def load_results(results_dir: Path | str) -> pd.DataFrame:
    """Every ``result.json`` below ``results_dir``; a diverged run has NaN scores."""
    rows = []
    for path in sorted(Path(results_dir).rglob("result.json")):
        result = json.loads(path.read_text())
        final = result.get("final") or {}
        rows.append(
            {
                **{key: result.get(key) for key in RUN_KEYS + ["profile"]},
                "status": result.get("status"),
                "steps": result.get("steps"),
                "diverged_step": result.get("diverged_step"),
                **{key: final.get(key) for key in SCORE_COLUMNS + ["episodes"]},
                "wall_time_s": result.get("wall_time_s"),
                "run_dir": str(path.parent),
            }
        )
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for column in SCORE_COLUMNS + ["wall_time_s"]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _profile_name(config: dict) -> str | None:
    profile = config.get("profile")
    return profile.get("name") if isinstance(profile, dict) else profile


def load_curves(results_dir: Path | str) -> pd.DataFrame:
    """Every evaluation of every run below ``results_dir`` (finished or not), one row each.

    The run's keys and profile come from its ``config.json``; a line that is not valid JSON
    (a run killed while writing) is skipped.
    """
    rows = []
    for metrics_path in sorted(Path(results_dir).rglob("metrics.jsonl")):
        config_path = metrics_path.parent / "config.json"
        if not config_path.exists():
            continue
        config = json.loads(config_path.read_text())
        keys = {key: config.get(key) for key in RUN_KEYS}
        profile = _profile_name(config)
        for line in metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("kind") != "eval":
                continue
            rows.append(
                {
                    **keys,
                    "profile": profile,
                    "step": record["step"],
                    **{key: record.get(key) for key in SCORE_COLUMNS + ["episodes"]},
                }
            )
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    for column in SCORE_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["step"] = pd.to_numeric(frame["step"]).astype("int64")
    return frame

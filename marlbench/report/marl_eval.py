"""Export of a benchmark's runs in marl-eval's raw-data JSON format (instadeepai/marl-eval,
README "Data Structure for Raw Experiment data"), so its aggregation and plotting tools can read
our results::

    {environment: {task: {algorithm: {run: {"step_<i>": {"step_count": int, metric: [values]},
                                            ..., "absolute_metrics": {metric: [values]}}}}}}

Mapping:

- environment = our suite (``mamujoco``, ``smacv1`` …);
- task = ``<task>_<quality>`` (``hopper_medium-replay``): marl-eval has no dataset level, and
  an offline dataset is a separate task;
- algorithm = the table's column: the algorithm name, with ``[<variant>]`` appended for a
  non-default variant (``comadice[alpha=0.1]``); marl-eval lower-cases names, ours already are;
- run = ``seed_<k>``;
- ``step_<i>`` = the i-th evaluation (from 0) of ``metrics.jsonl``, ``step_count`` its gradient
  step (offline training takes no environment steps; the update count is the clock);
- metrics: ``episode_return`` = ``[return_mean]``, ``win_rate`` = ``[win_rate]`` (a fraction, as
  in our result files) where the suite has wins, ``expected_return`` where the evaluator
  computes it. marl-eval accepts a one-element list for a metric computed over many episodes;
  our evaluations store the mean, not every episode's return;
- ``absolute_metrics`` = the same metrics of ``result.json["final"]``, the last evaluation with
  the profile's larger ``final_eval_episodes``. Departure: Gorsane et al.'s absolute metric
  re-evaluates the best checkpoint with 10x the episodes; we report the final policy, as the
  ComaDICE paper does.

Only completed runs are exported (marl-eval needs the same runs and steps everywhere; a diverged
run has no final score). Its tools also need the same number of runs and evaluations in every
cell; ``marl_eval_json`` does not pad, so a partly finished grid yields a valid file that
marl-eval's ``DiagnoseData`` will flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from marlbench.report.tables import Column

METRIC_NAMES = {"return_mean": "episode_return", "win_rate": "win_rate", "expected_return": "expected_return"}


def _metrics(record: pd.Series) -> dict[str, list[float]]:
    values = {}
    for ours, theirs in METRIC_NAMES.items():
        value = record.get(ours)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            values[theirs] = [float(value)]
    return values


def algorithm_name(column: Column) -> str:
    return column.algo if column.variant == "default" else f"{column.algo}[{column.variant}]"


def marl_eval_json(runs: pd.DataFrame, curves: pd.DataFrame, columns: Sequence[Column]) -> dict[str, Any]:
    """The nested marl-eval dictionary of the completed runs in ``runs`` (a ``load_results``
    frame) with their evaluations from ``curves`` (a ``load_curves`` frame)."""
    names = {(column.algo, column.variant): algorithm_name(column) for column in columns}
    completed = runs[runs["status"] == "completed"]
    evaluations = {
        key: group.sort_values("step")
        for key, group in curves.groupby(["suite", "task", "quality", "algo", "variant", "seed"])
    }
    data: dict[str, Any] = {}
    for _, run in completed.sort_values(["suite", "task", "quality", "algo", "variant", "seed"]).iterrows():
        name = names.get((run["algo"], run["variant"]))
        if name is None:
            continue
        key = (run["suite"], run["task"], run["quality"], run["algo"], run["variant"], run["seed"])
        steps = {
            f"step_{index}": {"step_count": int(record["step"]), **_metrics(record)}
            for index, (_, record) in enumerate(evaluations.get(key, pd.DataFrame()).iterrows())
        }
        task = f"{run['task']}_{run['quality']}"
        entry = data.setdefault(run["suite"], {}).setdefault(task, {}).setdefault(name, {})
        entry[f"seed_{int(run['seed'])}"] = {**steps, "absolute_metrics": _metrics(run)}
    return data

"""The trainer: run directory contents, resume without duplicates, config conflicts, divergence."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from marlbench.algorithm import _ALGORITHMS, Algorithm, AlgorithmConfig, register
from marlbench.errors import ConfigError, RunDirectoryError
from marlbench.train import CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE, train


def _metric_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def test_run_writes_config_metrics_result_and_checkpoint(make_request):
    outcome = train(make_request(profile="smoke"))
    run_dir = outcome.run_dir
    assert run_dir.relative_to(make_request().results).parts == ("matrix", "xor", "aa-ab-ba", "bc", "default", "seed0")
    for name in ("config.json", METRICS_FILE, RESULT_FILE, CHECKPOINT_FILE):
        assert (run_dir / name).is_file(), name
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert result["status"] == "completed" and result["steps"] == 200
    assert {"algo", "suite", "task", "quality", "seed", "profile", "wall_time_s", "config"} <= set(result)
    final = result["final"]
    assert final["episodes"] == 32 and final["win_rate"] is None
    assert set(final["joint_action_probs"]) == {"AA", "AB", "BA", "BB"}
    assert sum(final["joint_action_probs"].values()) == pytest.approx(1.0)
    assert result["config"]["algorithm_config"]["learning_rate"] == 1e-3
    lines = _metric_lines(run_dir)
    evals = [line for line in lines if line["kind"] == "eval"]
    assert [line["step"] for line in evals] == [100, 200]
    assert evals[-1]["return_mean"] == final["return_mean"]
    assert [line["step"] for line in lines if line["kind"] == "train"] == [50, 100, 150, 200]


def test_completed_run_is_not_run_again(make_request):
    first = train(make_request(profile="smoke"))
    stamp = (first.run_dir / RESULT_FILE).stat().st_mtime_ns
    second = train(make_request(profile="smoke"))
    assert second.result == first.result
    assert (first.run_dir / RESULT_FILE).stat().st_mtime_ns == stamp


class _Interrupted(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(make_request, tmp_path):
    reference = train(make_request(profile="smoke", results=tmp_path / "reference"))

    def stop_at_first_checkpoint(step: int, run_dir: Path) -> None:
        raise _Interrupted(step)

    request = make_request(profile="smoke", results=tmp_path / "interrupted")
    with pytest.raises(_Interrupted):
        train(request, on_checkpoint=stop_at_first_checkpoint)
    run_dir = reference.run_dir.relative_to(tmp_path / "reference")
    assert not (tmp_path / "interrupted" / run_dir / RESULT_FILE).exists()
    resumed = train(request)
    assert resumed.result["final"] == reference.result["final"]
    steps = [(line["kind"], line["step"]) for line in _metric_lines(resumed.run_dir)]
    assert len(steps) == len(set(steps))
    assert steps == [(line["kind"], line["step"]) for line in _metric_lines(reference.run_dir)]


def test_a_checkpoint_from_another_version_is_refused_with_the_file_named(make_request, tmp_path):
    def stop_at_first_checkpoint(step: int, run_dir: Path) -> None:
        raise _Interrupted(step)

    request = make_request(profile="smoke")
    with pytest.raises(_Interrupted):
        train(request, on_checkpoint=stop_at_first_checkpoint)
    checkpoint_path = next(request.results.rglob(CHECKPOINT_FILE))
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    checkpoint["algorithm"] = {"networks": {"renamed.weight": torch.zeros(1)}}  # an older layout
    torch.save(checkpoint, checkpoint_path)
    expected = rf"{checkpoint_path}: expected field 'algorithm' to fit this version of bc, found KeyError.*--overwrite"
    with pytest.raises(RunDirectoryError, match=expected) as refused:
        train(request)
    assert refused.value.exit_code == 2
    outcome = train(replace(request, overwrite=True))  # the advice works
    assert outcome.result["status"] == "completed"


def test_run_killed_by_signal_resumes_without_duplicates(make_request, tmp_path):
    """A real SIGKILL right after the first checkpoint lands, then the same command again."""
    command = [
        sys.executable, "-m", "marlbench.cli", "run", "--algo", "bc", "--suite", "matrix", "--task", "xor",
        "--quality", "ab-ba", "--seed", "3", "--profile", "smoke", "--steps", "1500",
        "--results", str(tmp_path / "killed"), "--data", str(tmp_path / "data"),
    ]  # fmt: skip
    run_dir = tmp_path / "killed" / "matrix" / "xor" / "ab-ba" / "bc" / "default" / "seed3"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run_dir / CHECKPOINT_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert not (run_dir / RESULT_FILE).exists(), "the run finished before it could be killed"
    subprocess.run(command, check=True, capture_output=True)
    reference = train(make_request(task="xor", quality="ab-ba", seed=3, profile="smoke", steps=1500))
    resumed = json.loads((run_dir / RESULT_FILE).read_text())
    assert resumed["final"] == reference.result["final"]
    steps = [(line["kind"], line["step"]) for line in _metric_lines(run_dir)]
    assert len(steps) == len(set(steps))
    assert steps == [(line["kind"], line["step"]) for line in _metric_lines(reference.run_dir)]


def test_rerun_with_another_config_refuses_unless_overwrite(make_request):
    train(make_request(profile="smoke", variant="mine"))
    with pytest.raises(ConfigError, match="another config.*algorithm_config"):
        train(make_request(profile="smoke", variant="mine", overrides={"learning_rate": 3e-4}))
    outcome = train(make_request(profile="smoke", variant="mine", overrides={"learning_rate": 3e-4}, overwrite=True))
    assert outcome.result["config"]["algorithm_config"]["learning_rate"] == 3e-4


def test_overrides_name_their_own_variant(make_request):
    outcome = train(make_request(profile="smoke", overrides={"learning_rate": 3e-4}))
    assert outcome.run_dir.parent.name == "learning_rate=0.0003"


@dataclass
class _DivergingConfig(AlgorithmConfig):
    diverge_at: int = 7


class _Diverging(Algorithm):
    """Test algorithm whose loss becomes NaN at a chosen step."""

    name = "test-diverging"
    title = "diverges on purpose"
    Config = _DivergingConfig

    def __init__(self, spec, config, device):
        super().__init__(spec, config, device)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def update(self, batch, step):
        return {"loss": float("nan") if step >= self.config.diverge_at else 1.0}

    def act(self, obs, avail, deterministic=True):
        return torch.zeros(obs.shape[:2], dtype=torch.int64)


def test_non_finite_loss_stops_the_run_as_diverged(make_request):
    register(_Diverging)
    try:
        outcome = train(make_request(algo="test-diverging", profile="smoke"))
    finally:
        _ALGORITHMS.pop("test-diverging")
    result = outcome.result
    assert result["status"] == "diverged"
    assert result["diverged_step"] == 7 and result["steps"] == 7
    assert result["final"] is None
    assert result["diverged_message"] == "non-finite loss: loss=nan"
    last = _metric_lines(outcome.run_dir)[-1]
    assert last == {"step": 7, "kind": "diverged", "message": "non-finite loss: loss=nan", "loss": "nan"}


def test_algorithm_refuses_an_action_space_it_does_not_support(make_request):
    register(_Diverging)
    _Diverging.action_types = ("discrete",)
    try:
        with pytest.raises(ConfigError, match="supports discrete actions"):
            train(make_request(algo="test-diverging", task="bandit", quality="gmm", profile="smoke"))
    finally:
        _ALGORITHMS.pop("test-diverging")


def test_a_run_started_before_config_json_recorded_headings_resumes(make_request):
    """``display`` (the algorithm's heading and column order) is recorded, like ``runtime``, outside
    the run's identity: a config.json without it (or with another heading) is the same run."""

    def stop_at_first_checkpoint(step: int, run_dir: Path) -> None:
        raise _Interrupted(step)

    request = make_request(profile="smoke")
    with pytest.raises(_Interrupted):
        train(request, on_checkpoint=stop_at_first_checkpoint)
    config_path = next(Path(request.results).rglob("config.json"))
    config = json.loads(config_path.read_text())
    assert config.pop("display") == {"display_name": "BC", "column_order": 0}
    config_path.write_text(json.dumps(config))
    resumed = train(request)
    assert resumed.result["status"] == "completed"
    assert resumed.result["config"]["display"] == {"display_name": "BC", "column_order": 0}

"""A hostile user's `marlbench run`: bad values, damaged checkpoints, a full or read-only disk,
NaN inside a forward pass, and the data path spelled another way. Every refusal exits 2,
names the file or directory, and every command it suggests is run here and works."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from cli_helpers import RUN, RUN_DIR, run_cli

from marlbench.algorithm import _ALGORITHMS, Algorithm, AlgorithmConfig, register
from marlbench.data.sampler import Sampler
from marlbench.suites import get_suite
from marlbench.train import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, RESULT_FILE, train


def _metric_keys(run_dir: Path) -> list[tuple[str, int]]:
    return [(r["kind"], r["step"]) for r in map(json.loads, (run_dir / METRICS_FILE).read_text().splitlines())]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--steps", "0"], "steps (--steps): expected an integer >= 1, found 0"),
        (["--seed", "-1"], "seed (--seed): expected an integer >= 0, found -1"),
        (["--threads", "0"], "threads (--threads): expected an integer >= 1, found 0"),
        (["--set", "batch_size=0"], "bc: field 'batch_size': expected an integer >= 1, found 0"),
    ],
)
def test_bad_values_exit_2_before_anything_is_created(capsys, tmp_path, args, expected):
    code, _, err = run_cli(capsys, *RUN, *args)
    assert code == 2
    assert expected in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def _sampled_batch_sizes(monkeypatch) -> list[int]:
    sizes: list[int] = []
    sample = Sampler.sample

    def recording(self, batch_size):
        sizes.append(batch_size)
        return sample(self, batch_size)

    monkeypatch.setattr(Sampler, "sample", recording)
    return sizes


def test_an_explicit_batch_size_wins_over_the_profiles_and_is_recorded(make_request, monkeypatch):
    sizes = _sampled_batch_sizes(monkeypatch)
    explicit = train(make_request(profile="smoke", overrides={"batch_size": 32}))
    assert explicit.run_dir.parent.name == "batch_size=32"
    assert set(sizes) == {32}
    assert json.loads((explicit.run_dir / CONFIG_FILE).read_text())["algorithm_config"]["batch_size"] == 32
    sizes.clear()
    default = train(make_request(profile="smoke"))
    assert set(sizes) == {64}  # the smoke profile's batch size where the user set none
    assert default.result["config"]["algorithm_config"]["batch_size"] == 64


def _interrupted_run(capsys) -> Path:
    """A smoke run stopped after its first checkpoint, as a killed process leaves it."""
    assert run_cli(capsys, *RUN)[0] == 0
    (RUN_DIR / RESULT_FILE).unlink()
    return RUN_DIR / CHECKPOINT_FILE


@pytest.mark.parametrize("damage", ["truncated", "zero-filled", "empty"])
def test_a_damaged_checkpoint_is_named_and_overwrite_restarts_the_run(capsys, damage):
    checkpoint = _interrupted_run(capsys)
    data = checkpoint.read_bytes()
    checkpoint.write_bytes({"truncated": data[: len(data) // 2], "zero-filled": bytes(len(data)), "empty": b""}[damage])
    code, _, err = run_cli(capsys, *RUN)
    assert code == 2
    assert f"{checkpoint}: expected" in err
    assert "expected a checkpoint written by torch.save, found an unreadable file" in err
    assert "Rerun the same command with --overwrite" in err
    code, out, _ = run_cli(capsys, *RUN, "--overwrite")
    assert code == 0 and "final return:" in out
    assert json.loads((RUN_DIR / RESULT_FILE).read_text())["status"] == "completed"
    keys = _metric_keys(RUN_DIR)
    assert len(keys) == len(set(keys))


def test_overwrite_restarts_a_finished_run_with_the_same_config(capsys):
    assert run_cli(capsys, *RUN)[0] == 0
    before = (RUN_DIR / RESULT_FILE).stat().st_mtime_ns
    assert run_cli(capsys, *RUN, "--overwrite")[0] == 0
    assert (RUN_DIR / RESULT_FILE).stat().st_mtime_ns != before
    keys = _metric_keys(RUN_DIR)
    assert len(keys) == len(set(keys))


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _torch_zip_writer_on_a_full_disk(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1728 vs 1624")


@pytest.mark.parametrize(
    ("target", "replacement", "file", "found"),
    [
        ("torch.save", _no_space, CHECKPOINT_FILE, "No space left on device (ENOSPC"),
        ("torch.save", _torch_zip_writer_on_a_full_disk, CHECKPOINT_FILE, "a write cut short"),
        ("marlbench.train.write_json_atomic", _no_space, CONFIG_FILE, "No space left on device (ENOSPC"),
    ],
)
def test_a_full_disk_is_an_error_naming_the_file_and_the_run_resumes_later(
    capsys, monkeypatch, target, replacement, file, found
):
    with monkeypatch.context() as patch:
        patch.setattr(target, replacement)
        code, _, err = run_cli(capsys, *RUN)
    assert code == 2
    assert f"{RUN_DIR / file}: expected a writable directory with free space, found {found}" in err
    assert "MiB free there" in err and "rerun the same command" in err
    assert not [path for path in RUN_DIR.iterdir() if path.name.endswith(".tmp")]
    code, out, _ = run_cli(capsys, *RUN)
    assert code == 0 and "final return:" in out


def test_a_read_only_results_root_is_an_error_naming_the_directory(capsys, monkeypatch, tmp_path):
    assert run_cli(capsys, "data", "generate", "--suite", "matrix", "--task", "xor", "--quality", "ab")[0] == 0
    results = tmp_path / "results"
    make_directory = os.mkdir

    def read_only_results(path, *args, **kwargs):
        if Path(path).is_relative_to(results):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return make_directory(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only_results)
    code, _, err = run_cli(capsys, *RUN, "--results", str(results))
    assert code == 2
    assert f"{results / RUN_DIR.relative_to('results')}: expected a writable directory" in err
    assert "Read-only file system (EROFS)" in err and "--results" in err
    code, _, _ = run_cli(capsys, *RUN, "--results", str(tmp_path / "elsewhere"))  # the advice works
    assert code == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_chmod_read_only_results_root_is_an_error_naming_the_directory(capsys, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, *RUN, "--results", str(results))
    finally:
        results.chmod(0o755)
    assert code == 2
    assert "expected a writable directory with free space, found Permission denied (EACCES)" in err
    assert str(results) in err


def test_nan_logits_inside_the_update_end_the_run_as_diverged(capsys):
    """BC with learning rate 1e30: torch's distribution check raises on NaN logits before any loss."""
    code, out, _ = run_cli(capsys, *RUN, "--set", "learning_rate=1e30")
    assert code == 1
    run_dir = RUN_DIR.parent.parent / "learning_rate=1e+30" / "seed0"
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert result["status"] == "diverged" and result["final"] is None
    assert result["diverged_step"] == result["steps"] and result["diverged_step"] >= 1
    assert result["diverged_message"].startswith("non-finite values in the update (torch: Expected parameter logits")
    assert f"status: diverged at step {result['diverged_step']} (non-finite values in the update" in out
    last = json.loads((run_dir / METRICS_FILE).read_text().splitlines()[-1])
    assert last == {"step": result["diverged_step"], "kind": "diverged", "message": result["diverged_message"]}


class _NaNPolicy(Algorithm):
    """Finite losses, but a policy whose probabilities are NaN: only the evaluation sees it."""

    name = "test-nan-policy"
    title = "NaN action probabilities"
    action_types = ("discrete",)

    def __init__(self, spec, config, device):
        super().__init__(spec, config, device)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def update(self, batch, step):
        return {"loss": 1.0}

    def act(self, obs, avail, deterministic=True):
        return torch.zeros(obs.shape[:2], dtype=torch.int64)

    def action_probs(self, obs, avail):
        return torch.full((*obs.shape[:2], self.spec.n_actions), float("nan"))


def test_a_non_finite_evaluation_ends_the_run_as_diverged(make_request):
    register(_NaNPolicy)
    try:
        outcome = train(make_request(algo="test-nan-policy", profile="smoke"))
    finally:
        _ALGORITHMS.pop("test-nan-policy")
    result = outcome.result
    assert result["status"] == "diverged" and result["diverged_step"] == 100  # the first evaluation
    assert result["diverged_message"].startswith("non-finite evaluation: expected_return=nan")
    assert "NaN" not in (outcome.run_dir / RESULT_FILE).read_text()


@dataclass
class _RaisingConfig(AlgorithmConfig):
    message: str = "something else went wrong"


class _Raising(Algorithm):
    name = "test-raising"
    title = "raises a ValueError that is not about non-finite values"
    Config = _RaisingConfig

    def update(self, batch, step):
        raise ValueError(self.config.message)

    def act(self, obs, avail, deterministic=True):
        return torch.zeros(obs.shape[:2], dtype=torch.int64)


def test_other_errors_inside_the_update_are_not_taken_for_divergence(make_request):
    register(_Raising)
    try:
        with pytest.raises(ValueError, match="something else went wrong"):
            train(make_request(algo="test-raising", profile="smoke"))
    finally:
        _ALGORITHMS.pop("test-raising")


def test_the_data_path_spelled_another_way_or_a_copy_is_the_same_run(capsys, tmp_path):
    assert run_cli(capsys, *RUN, "--data", "data")[0] == 0
    first = json.loads((RUN_DIR / RESULT_FILE).read_text())
    assert first["config"]["runtime"]["dataset_path"] == str(tmp_path / "data" / "matrix" / "xor" / "ab")
    code, out, err = run_cli(capsys, *RUN, "--data", str(tmp_path / "data"))
    assert code == 0, err
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    code, _, err = run_cli(capsys, *RUN, "--dataset", str(tmp_path / "copy" / "matrix" / "xor" / "ab"))
    assert code == 0, err
    assert json.loads((RUN_DIR / RESULT_FILE).read_text()) == first  # returned as it was, not run again


def test_a_dataset_with_other_content_is_another_config(capsys, tmp_path):
    assert run_cli(capsys, *RUN)[0] == 0
    get_suite("matrix").generate("xor", "ab", tmp_path / "other", episodes=100)
    code, _, err = run_cli(capsys, *RUN, "--dataset", str(tmp_path / "other"))
    assert code == 2
    assert "holds a run with another config (differs in: dataset)" in err

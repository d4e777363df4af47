"""Shared fixtures: every test writes datasets and results under its own temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marlbench.train import RunRequest
from marlbench.workspace import DATA_ENV_VAR, RESULTS_ENV_VAR, Workspace


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "data"))
    monkeypatch.delenv(RESULTS_ENV_VAR, raising=False)  # results/ under tmp_path, the working directory
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)


@pytest.fixture
def make_request(tmp_path: Path):
    def build(algo: str = "bc", task: str = "xor", quality: str = "aa-ab-ba", seed: int = 0, **kwargs) -> RunRequest:
        """A matrix-suite request; ``workspace`` (or ``data`` / ``results``) default to ``tmp_path``'s."""
        workspace = kwargs.pop("workspace", None) or Workspace.resolve(
            data=kwargs.pop("data", tmp_path / "data"), results=kwargs.pop("results", tmp_path / "results")
        )
        kwargs.update(data=workspace.data, results=workspace.results)
        kwargs.setdefault("progress", False)
        kwargs.setdefault("threads", 1)  # tiny networks: one thread is fastest, and tests may run side by side
        return RunRequest(
            algo=algo, suite=kwargs.pop("suite", "matrix"), task=task, quality=quality, seed=seed, **kwargs
        )

    return build

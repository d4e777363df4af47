"""Helpers the run-fault tests share: one small matrix run through the command line."""

from __future__ import annotations

from pathlib import Path

from marlbench.cli import main

RUN = ["run", "--algo", "bc", "--suite", "matrix", "--task", "xor", "--quality", "ab", "--profile", "smoke"]
RUN_DIR = Path("results/matrix/xor/ab/bc/default/seed0")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``marlbench ARGS`` in this process: exit code, stdout, stderr."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err

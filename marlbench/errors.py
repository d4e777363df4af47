"""Errors that reach the user: each says what was wrong, where, and what was expected."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType


class MarlbenchError(Exception):
    """Base class; ``exit_code`` is what the command line returns for it."""

    exit_code = 1


class DatasetError(MarlbenchError):
    """A dataset file is missing, corrupt, or does not match the store format."""

    def __init__(self, path: Path | str, field: str, expected: object, found: object, detail: str = ""):
        self.path = Path(path)
        self.field = field
        self.expected = expected
        self.found = found
        message = f"{self.path}: field '{field}': expected {expected}, found {found}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class DatasetExistsError(DatasetError, FileExistsError):
    """The target of a dataset write already holds something, and overwrite was not asked for."""


class DatasetWriteError(DatasetError):
    """Writing a dataset failed (no space, no permission); nothing of the write was left behind."""


class UnknownNameError(MarlbenchError):
    """An algorithm, suite, task, quality or config field name that does not exist."""

    exit_code = 2

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        close = closest_names(name, self.choices)
        message = f"unknown {kind} '{name}'"
        if close:
            message += f"; did you mean {', '.join(repr(c) for c in close)}?"
        message += f" (known: {', '.join(self.choices) or 'none'})"
        super().__init__(message)


def closest_names(name: str, choices: list[str], limit: int = 3) -> list[str]:
    """Similar spellings, names containing ``name``, and names it abbreviates (lr -> learning_rate)."""

    def initials(choice: str) -> str:
        return "".join(part[:1] for part in choice.replace("-", "_").split("_"))

    found = difflib.get_close_matches(name, choices, n=limit, cutoff=0.5)
    found += [c for c in choices if name and (name in c or initials(c) == name) and c not in found]
    return found[:limit]


class ConfigError(MarlbenchError):
    """A configuration value of the wrong type, or a run directory holding another config."""

    exit_code = 2


class MissingDependencyError(MarlbenchError):
    """An optional dependency is not installed; the message holds the pip command."""

    exit_code = 3

    def __init__(self, module: str, extra: str, purpose: str):
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed. "
            f"Install it with: pip install 'marlbench[{extra}]' "
            f"(from a source checkout: pip install -e '.[{extra}]')"
        )


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency or raise ``MissingDependencyError`` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(module, extra, purpose) from error


class RunDirectoryError(MarlbenchError):
    """A run directory that cannot be used as it is: not writable, full, locked by another run,
    or holding a file (checkpoint, config) that cannot be read."""

    exit_code = 2

    def __init__(self, path: Path | str, expected: object, found: object, advice: str = ""):
        self.path = Path(path)
        message = f"{self.path}: expected {expected}, found {found}"
        if advice:
            message += f". {advice}"
        super().__init__(message)


class RunLockedError(RunDirectoryError):
    """Another run holds the run directory's lock."""

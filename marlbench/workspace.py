"""Where datasets and results live, decided once per command.

The data root holds ``<data>/<suite>/<task>/<quality>/`` (one dataset each); the results root
holds the run directories (``marlbench run``: ``<results>/<suite>/…``; a grid:
``<results>/<profile>/<suite>/…``). Each is the command line's flag (``--data``, ``--results``),
else the environment variable (``MARLBENCH_DATA``, ``MARLBENCH_RESULTS``), else ``data/`` and
``results/`` under the current directory.

:meth:`Workspace.resolve` is called at the entry points only (the command line, the grid driver,
the tests' ``make_request``); everything below takes the :class:`Workspace` or the paths it
holds and never reads the environment. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATA_ENV_VAR = "MARLBENCH_DATA"
RESULTS_ENV_VAR = "MARLBENCH_RESULTS"
DEFAULT_DATA = Path("data")
DEFAULT_RESULTS = Path("results")


def dataset_root(data: Path | str, suite: str, task: str, quality: str) -> Path:
    """The directory of one dataset below the data root ``data``."""
    return Path(data) / suite / task / quality


@dataclass(frozen=True)
class Workspace:
    data: Path
    """The data root: ``<data>/<suite>/<task>/<quality>/`` per dataset."""
    results: Path
    """The results root: run directories below it (a grid's below ``<results>/<profile>/``)."""

    @classmethod
    def resolve(
        cls,
        data: Path | str | None = None,
        results: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Workspace:
        """The flags where given, else ``$MARLBENCH_DATA`` / ``$MARLBENCH_RESULTS`` (an empty
        variable counts as unset), else ``data`` / ``results``. Paths are kept as spelled
        (relative ones stay relative); :meth:`absolute` fixes them for other processes."""
        environ = os.environ if environ is None else environ

        def pick(flag: Path | str | None, variable: str, default: Path) -> Path:
            if flag is not None:
                return Path(flag)
            return Path(environ[variable]) if environ.get(variable) else default

        return cls(pick(data, DATA_ENV_VAR, DEFAULT_DATA), pick(results, RESULTS_ENV_VAR, DEFAULT_RESULTS))

    def absolute(self) -> Workspace:
        """The same roots as absolute paths with symlinks resolved (for trials that run in other
        processes, other working directories or on other nodes)."""
        return Workspace(self.data.resolve(), self.results.resolve())

    def dataset_root(self, suite: str, task: str, quality: str) -> Path:
        return dataset_root(self.data, suite, task, quality)

    def profile_results(self, profile: str) -> Path:
        """Where a grid of ``profile`` keeps its run directories: ``<results>/<profile>``."""
        return self.results / profile

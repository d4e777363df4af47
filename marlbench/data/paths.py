"""Where datasets live: ``<data>/<suite>/<task>/<quality>/``.

``<data>`` is the ``--data`` option, else the ``MARLBENCH_DATA`` environment variable,
else ``data/`` under the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "MARLBENCH_DATA"


def data_dir(override: Path | str | None = None) -> Path:
    if override is not None:
        return Path(override)
    return Path(os.environ.get(DATA_ENV_VAR, "data"))


def dataset_root(suite: str, task: str, quality: str, data: Path | str | None = None) -> Path:
    return data_dir(data) / suite / task / quality

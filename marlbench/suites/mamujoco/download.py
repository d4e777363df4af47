"""Where the papers published the MaMuJoCo datasets: OMIGA's share, one hdf5 file per task and quality.

ComaDICE used the same files. :mod:`marlbench.data.download` fetches and imports them.
"""

from __future__ import annotations

import urllib.parse

from marlbench.data.download import SourceEntry
from marlbench.suites.mamujoco.tasks import QUALITIES, TASKS

OMIGA_README = "https://github.com/ZhengYinan-AIR/OMIGA"
OMIGA_SHARE = "https://cloud.tsinghua.edu.cn/d/dcf588d659214a28a777/"
"""The "Download link" of OMIGA's README (a Tsinghua cloud, i.e. Seafile, shared folder)."""


def _omiga_file_url(file_name: str) -> str:
    # Inferred, not documented by the authors: Seafile serves a file of a shared folder
    # at <share>/files/?p=<url-encoded path>&dl=1, and OMIGA's README's example
    # ("/data/Ant-v2-2x4-expert.hdf5") suggests the files sit at the share's root.
    return f"{OMIGA_SHARE}files/?p={urllib.parse.quote('/' + file_name, safe='')}&dl=1"


def _omiga_sources() -> dict[tuple[str, str], tuple[SourceEntry, ...]]:
    sources = {}
    for task_name, task in TASKS.items():
        for quality in QUALITIES:
            file_name = f"{task.paper_file_stem}-{quality}.hdf5"
            entry = SourceEntry(
                suite="mamujoco",
                task=task_name,
                quality=quality,
                file_name=file_name,
                url=_omiga_file_url(file_name),
                format="omiga-hdf5",
                page=OMIGA_SHARE,
                # The authors publish no checksums or sizes; the sha256 of the file
                # actually imported is recorded in the dataset's meta.json.
                sha256=None,
                size=None,
                note=f"the dataset link of OMIGA's README ({OMIGA_README})",
            )
            sources[(task_name, quality)] = (entry,)
    return sources


SOURCES: dict[tuple[str, str], tuple[SourceEntry, ...]] = _omiga_sources()
"""The published copies of every dataset, by (task, quality)."""

"""Importing the datasets the papers published: the format registry and the checks every import gets.

A suite names the formats its published data come in (:meth:`Suite.importers
<marlbench.suites.Suite.importers>`, e.g. MaMuJoCo's ``omiga-hdf5``, ``comadice-npz`` and
``omar-npy``) and what imported data must match (:meth:`Suite.import_target
<marlbench.suites.Suite.import_target>`: the task's spec and the ``env_options`` recorded
with it). ``import_dataset("omiga-hdf5", path, root, suite="mamujoco", task="hopper",
quality="medium")`` reads the external file(s), checks their dimensions against that spec
before writing anything, rejects actions outside the action box unless asked to clip
them, and writes a store dataset whose ``meta.json`` records the importer, the source
files' names and sha256, and every convention applied. The formats' facts are in
REFERENCE.md ("Datasets in the wild"); each importer's module documents its conventions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from marlbench.data.importers.base import CHUNK_ROWS, Converted, Importer
from marlbench.data.store import Dataset, check_write_target, sha256_file, write_dataset
from marlbench.errors import DatasetError, UnknownNameError
from marlbench.spec import EnvSpec
from marlbench.suites import get_suite

__all__ = ["Converted", "Importer", "import_dataset", "import_target", "importers"]


def importers(suite: str) -> Mapping[str, Importer]:
    """The formats data of ``suite`` can be imported from, by name."""
    return get_suite(suite).importers()


def import_target(suite: str, task: str, quality: str | None = None) -> tuple[EnvSpec, dict[str, Any]]:
    """The spec imported data of ``suite/task`` must match and the ``env_options`` recorded with it."""
    suite_object = get_suite(suite)
    if quality is not None:
        suite_object.check_quality(task, quality)
    return suite_object.import_target(task)


def import_dataset(
    fmt: str,
    source: Path | str,
    root: Path | str,
    *,
    suite: str,
    task: str,
    quality: str,
    overwrite: bool = False,
    clip_actions: bool = False,
    **options: Any,
) -> Dataset:
    """Import ``source`` (a file, or OMAR's folder) in format ``fmt`` as a dataset at ``root``.

    ``options`` go to the importer (``episode_limit`` and ``done_marks`` for omiga-hdf5,
    ``action_scale`` and ``episode_limit`` for comadice-npz, ``episode_limit`` for omar-npy).
    Raises ``UnknownNameError`` for an unknown format, ``DatasetError`` (naming the source
    file, key, expected and found shape or dtype) for data that do not fit the task, and
    ``DatasetExistsError`` (a ``FileExistsError``) if ``root`` holds anything but an empty
    directory and ``overwrite`` is false; on any error nothing is written."""
    formats = importers(suite)
    if fmt not in formats:
        raise UnknownNameError(f"import format of suite {suite}", fmt, formats)
    importer = formats[fmt]
    importer.check_options(options)
    spec, env_options = import_target(suite, task, quality)
    root = Path(root)
    check_write_target(root, overwrite)
    source = Path(source)
    converted = importer.convert(source, spec, **options)
    _check_finite(converted)
    conventions = list(converted.conventions)
    conventions += _check_action_range(converted, spec, clip_actions)
    files = [
        {"name": _relative_name(path, source), "sha256": sha256_file(path), "size": path.stat().st_size}
        for path in converted.files
    ]
    record = {
        "importer": fmt,
        "files": files,
        "conventions": conventions,
        "options": {key: value for key, value in sorted(options.items())},
        "clip_actions": bool(clip_actions),
    }
    return write_dataset(
        root,
        converted.fields,
        spec=spec,
        suite=suite,
        task=task,
        quality=quality,
        source=record,
        env_options=env_options,
        overwrite=overwrite,
    )


def _relative_name(path: Path, source: Path) -> str:
    if source.is_dir():
        try:
            return path.relative_to(source).as_posix()
        except ValueError:
            pass
    return path.name


def _check_finite(converted: Converted) -> None:
    for name in ("obs", "state", "actions", "reward"):
        array = converted.fields[name]
        path, key = converted.origin.get(name, (Path("?"), name))
        bad = 0
        for begin in range(0, array.shape[0], CHUNK_ROWS):
            bad += int(np.count_nonzero(~np.isfinite(array[begin : begin + CHUNK_ROWS])))
        if bad:
            raise DatasetError(path, key, "finite values", f"{bad} NaN or infinite values")


def _check_action_range(converted: Converted, spec: EnvSpec, clip: bool) -> list[str]:
    """Count transition rows with an action outside the box; raise, or clip and say so."""
    if spec.discrete:
        return []
    fields = converted.fields
    actions, valid = fields["actions"], fields["valid"]
    low, high = np.float32(spec.action_low), np.float32(spec.action_high)
    outside = ((actions < low) | (actions > high)).reshape(actions.shape[0], -1).any(axis=1) & valid
    count = int(np.count_nonzero(outside))
    if not count:
        return []
    worst = float(np.abs(actions[outside]).max())
    box = f"[{spec.action_low:g}, {spec.action_high:g}]"
    if not clip:
        path, key = converted.origin.get("actions", (Path("?"), "actions"))
        detail = f"import with clip_actions=True (--clip-actions) to clip them to {box}"
        if converted.action_hint:
            detail += f"; {converted.action_hint}"
        raise DatasetError(
            path,
            key,
            f"actions in {box}",
            f"{count} of {int(np.count_nonzero(valid))} transition rows with an action outside it (max |a| {worst:g})",
            detail,
        )
    np.clip(actions, low, high, out=actions)
    return [f"actions of {count} transition rows were outside {box} (max |a| {worst:g}) and were clipped to it"]

"""The dataset store: ``meta.json`` plus one memory-mapped ``.npy`` per field.

Rows are the time steps of episodes laid back to back. Every episode ends with one
extra row that holds its final observation, so the successor of a valid row ``r`` is
always row ``r + 1`` and no ``next_*`` copies are stored (DESIGN.md, "Store format").

Writers go through :func:`write_dataset`, which validates the arrays, writes them into
a temporary directory beside the target and renames it into place, so a failed write
leaves nothing behind. Readers go through :meth:`Dataset.open`, which checks every
field's presence, shape, dtype, finiteness and the row invariants, and raises a
:class:`~marlbench.errors.DatasetError` naming the file and the field otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marlbench.errors import DatasetError
from marlbench.spec import EnvSpec

FORMAT_VERSION = 1
META_FILE = "meta.json"
FLOAT_FIELDS = ("obs", "state", "reward")
_CHUNK_ROWS = 1 << 16


def field_layout(spec: EnvSpec) -> dict[str, tuple[tuple[str, ...], np.dtype]]:
    """Symbolic shape and dtype of every field for a task (R rows, E episodes)."""
    n, o, s = spec.n_agents, spec.obs_dim, spec.state_dim
    layout: dict[str, tuple[tuple[str, ...], np.dtype]] = {
        "obs": (("R", str(n), str(o)), np.dtype(np.float32)),
        "state": (("R", str(s)), np.dtype(np.float32)),
        "reward": (("R",), np.dtype(np.float32)),
        "terminal": (("R",), np.dtype(np.bool_)),
        "valid": (("R",), np.dtype(np.bool_)),
        "episode_start": (("E",), np.dtype(np.int64)),
    }
    if spec.discrete:
        layout["actions"] = (("R", str(n)), np.dtype(np.int64))
        layout["avail"] = (("R", str(n), str(spec.n_actions)), np.dtype(np.bool_))
    else:
        layout["actions"] = (("R", str(n), str(spec.action_dim)), np.dtype(np.float32))
    return layout


def _shape_text(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def validate_fields(fields: Mapping[str, np.ndarray], spec: EnvSpec, where: Path) -> None:
    """Check shapes, dtypes, finiteness and row invariants; raise ``DatasetError``."""
    layout = field_layout(spec)
    unexpected = sorted(set(fields) - set(layout))
    if unexpected:
        name = unexpected[0]
        raise DatasetError(where / f"{name}.npy", name, f"one of {sorted(layout)}", "an unknown field")
    for name in layout:
        if name not in fields:
            raise DatasetError(where / f"{name}.npy", name, "the file to exist", "no such field")
    for name, symbol in (("reward", "R"), ("episode_start", "E")):
        if fields[name].ndim != 1:
            raise DatasetError(
                where / f"{name}.npy", name, f"shape [{symbol}]", f"shape {_shape_text(fields[name].shape)}"
            )
    rows, episodes = fields["reward"].shape[0], fields["episode_start"].shape[0]
    sizes = {"R": rows, "E": episodes}
    for name, (symbolic, dtype) in layout.items():
        array = fields[name]
        expected_shape = tuple(sizes[d] if d in sizes else int(d) for d in symbolic)
        if array.dtype != dtype:
            raise DatasetError(where / f"{name}.npy", name, f"dtype {dtype}", f"dtype {array.dtype}")
        if array.shape != expected_shape:
            expected_text = _shape_text(tuple(d if d in sizes else int(d) for d in symbolic))
            raise DatasetError(
                where / f"{name}.npy",
                name,
                f"shape {expected_text} = {_shape_text(expected_shape)}",
                f"shape {_shape_text(array.shape)}",
            )
    if rows < 2 or episodes < 1:
        raise DatasetError(where / "reward.npy", "reward", "at least one episode with one transition", f"{rows} rows")
    for name in FLOAT_FIELDS + (() if spec.discrete else ("actions",)):
        _check_finite(fields[name], name, where)
    _check_row_invariants(fields, spec, where)


def _row_chunks(array: np.ndarray):
    """``(first_row, chunk)`` pairs. A memory map is read through ordinary file reads, so a
    full scan leaves no pages mapped into the process (its resident memory stays flat)."""
    filename = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or filename is None:
        for begin in range(0, array.shape[0], _CHUNK_ROWS):
            yield begin, np.asarray(array[begin : begin + _CHUNK_ROWS])
        return
    row_items = int(np.prod(array.shape[1:], dtype=np.int64))
    with open(filename, "rb") as handle:
        for begin in range(0, array.shape[0], _CHUNK_ROWS):
            rows = min(_CHUNK_ROWS, array.shape[0] - begin)
            handle.seek(array.offset + begin * row_items * array.dtype.itemsize)
            chunk = np.fromfile(handle, dtype=array.dtype, count=rows * row_items)
            yield begin, chunk.reshape((rows,) + array.shape[1:])


def _check_finite(array: np.ndarray, name: str, where: Path) -> None:
    for begin, chunk in _row_chunks(array):
        finite = np.isfinite(chunk)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            row = begin + int(bad[0])
            raise DatasetError(where / f"{name}.npy", name, "finite values", f"{chunk[tuple(bad)]} at row {row}")


def _check_row_invariants(fields: Mapping[str, np.ndarray], spec: EnvSpec, where: Path) -> None:
    rows = fields["reward"].shape[0]
    starts = np.asarray(fields["episode_start"])
    if starts[0] != 0:
        raise DatasetError(where / "episode_start.npy", "episode_start", "0 as the first entry", int(starts[0]))
    lengths = np.diff(np.append(starts, rows))
    if (lengths < 2).any():
        episode = int(np.argmax(lengths < 2))
        raise DatasetError(
            where / "episode_start.npy",
            "episode_start",
            "strictly increasing starts with at least 2 rows per episode (1 transition + the final row)",
            f"episode {episode} with {int(lengths[episode])} rows",
        )
    expected_valid = np.ones(rows, dtype=bool)
    expected_valid[starts[1:] - 1] = False
    expected_valid[-1] = False
    valid = np.asarray(fields["valid"])
    if not np.array_equal(valid, expected_valid):
        row = int(np.argmax(valid != expected_valid))
        raise DatasetError(
            where / "valid.npy",
            "valid",
            "False exactly on the final row of each episode",
            f"valid[{row}] = {bool(valid[row])}",
        )
    terminal = np.asarray(fields["terminal"])
    last_transition = expected_valid & ~np.append(expected_valid[1:], False)
    misplaced = terminal & ~last_transition
    if misplaced.any():
        row = int(np.argmax(misplaced))
        raise DatasetError(
            where / "terminal.npy",
            "terminal",
            "True only on the last transition of an episode",
            f"terminal[{row}] = True",
        )
    if spec.discrete:
        _check_discrete_actions(fields, spec, where, expected_valid)


def _check_discrete_actions(fields: Mapping[str, np.ndarray], spec: EnvSpec, where: Path, valid: np.ndarray) -> None:
    actions, avail = fields["actions"], fields["avail"]
    for begin, chunk in _row_chunks(actions):
        stop = begin + _CHUNK_ROWS
        rows_valid = valid[begin:stop]
        out_of_range = ((chunk < 0) | (chunk >= spec.n_actions)) & rows_valid[:, None]
        if out_of_range.any():
            row, agent = np.argwhere(out_of_range)[0]
            raise DatasetError(
                where / "actions.npy",
                "actions",
                f"integers in [0, {spec.n_actions})",
                f"{int(chunk[row, agent])} at row {begin + int(row)}, agent {int(agent)}",
            )
        taken = np.take_along_axis(np.asarray(avail[begin:stop]), np.clip(chunk, 0, spec.n_actions - 1)[..., None], -1)
        unavailable = ~taken[..., 0] & rows_valid[:, None]
        if unavailable.any():
            row, agent = np.argwhere(unavailable)[0]
            raise DatasetError(
                where / "avail.npy",
                "avail",
                "the taken action to be available",
                f"action {int(chunk[row, agent])} unavailable at row {begin + int(row)}, agent {int(agent)}",
            )


def episode_returns(reward: np.ndarray, valid: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
    """Undiscounted return of every episode (final rows carry no reward)."""
    return np.add.reduceat(np.where(valid, reward, 0.0).astype(np.float64), episode_start)


def dataset_statistics(fields: Mapping[str, np.ndarray]) -> dict[str, float | int]:
    returns = episode_returns(
        np.asarray(fields["reward"]), np.asarray(fields["valid"]), np.asarray(fields["episode_start"])
    )
    return {
        "episodes": int(returns.shape[0]),
        "transitions": int(np.count_nonzero(fields["valid"])),
        "terminals": int(np.count_nonzero(fields["terminal"])),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_temp_file(path: Path) -> Path:
    """A temporary file beside ``path`` with ordinary permissions (mkstemp's are 0600),
    so datasets and results stay readable by other users and workers on shared storage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_current_umask())
    return Path(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so readers never see half a file."""
    tmp = atomic_temp_file(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_dataset(
    root: Path | str,
    fields: Mapping[str, np.ndarray],
    *,
    spec: EnvSpec,
    suite: str,
    task: str,
    quality: str,
    source: Mapping[str, Any],
    env_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Dataset:
    """Validate ``fields`` and write them as a dataset at ``root``, atomically.

    ``env_options`` are what the suite's ``make_env`` needs to build the environment
    the data came from (e.g. ``{"observation_mode": "paper"}``)."""
    root = Path(root)
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root} already holds a dataset; pass overwrite=True (--overwrite) to replace it")
    validate_fields(fields, spec, root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.writing-"))
    os.chmod(staging, 0o777 & ~_current_umask())
    try:
        files: dict[str, dict[str, Any]] = {}
        for name in field_layout(spec):
            array = np.ascontiguousarray(fields[name])
            np.save(staging / f"{name}.npy", array)
            files[name] = {
                "file": f"{name}.npy",
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "sha256": sha256_file(staging / f"{name}.npy"),
            }
        meta = {
            "format_version": FORMAT_VERSION,
            "suite": suite,
            "task": task,
            "quality": quality,
            "spec": spec.to_dict(),
            "env_options": dict(env_options or {}),
            "source": dict(source),
            "statistics": dataset_statistics(fields),
            "files": files,
        }
        write_json_atomic(staging / META_FILE, meta)
        if root.exists():
            retired = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
            os.replace(root, retired / root.name)
            try:
                os.replace(staging, root)
            except BaseException:
                os.replace(retired / root.name, root)
                raise
            shutil.rmtree(retired)
        else:
            os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Dataset.open(root)


@dataclass
class Dataset:
    """An opened, validated dataset whose fields are read-only memory maps."""

    root: Path
    meta: dict[str, Any]
    spec: EnvSpec
    fields: dict[str, np.ndarray]

    @classmethod
    def open(cls, root: Path | str) -> Dataset:
        root = Path(root)
        meta_path = root / META_FILE
        if not meta_path.is_file():
            raise DatasetError(meta_path, "meta.json", "a dataset directory with meta.json", "no such file")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(meta_path, "meta.json", "valid JSON", f"a parse error: {error}") from error
        if not isinstance(meta, dict):
            raise DatasetError(meta_path, "meta.json", "a JSON object", type(meta).__name__)
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise DatasetError(meta_path, "format_version", FORMAT_VERSION, version)
        for key in ("suite", "task", "quality", "spec", "files"):
            if key not in meta:
                raise DatasetError(meta_path, key, "the key to be present", "no such key")
        try:
            spec = EnvSpec.from_dict(meta["spec"])
        except (TypeError, ValueError, AttributeError) as error:
            raise DatasetError(meta_path, "spec", "a valid environment spec", meta["spec"], str(error)) from error
        fields: dict[str, np.ndarray] = {}
        for name in field_layout(spec):
            path = root / f"{name}.npy"
            if not path.is_file():
                raise DatasetError(path, name, "the file to exist", "no such file")
            try:
                fields[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as error:
                raise DatasetError(path, name, "a readable .npy file", f"an unreadable file: {error}") from error
        validate_fields(fields, spec, root)
        return cls(root=root, meta=meta, spec=spec, fields=fields)

    def verify(self) -> None:
        """Re-check every file's sha256 and recorded shape/dtype against ``meta.json``."""
        for name, record in self.meta["files"].items():
            path = self.root / record["file"]
            found = sha256_file(path)
            if found != record["sha256"]:
                raise DatasetError(path, name, f"sha256 {record['sha256']}", f"sha256 {found}")
            array = self.fields[name]
            if list(array.shape) != record["shape"] or str(array.dtype) != record["dtype"]:
                raise DatasetError(
                    path, name, f"{record['dtype']} {record['shape']} (meta.json)", f"{array.dtype} {list(array.shape)}"
                )

    @property
    def n_rows(self) -> int:
        return int(self.fields["reward"].shape[0])

    @property
    def n_episodes(self) -> int:
        return int(self.fields["episode_start"].shape[0])

    @property
    def n_transitions(self) -> int:
        return int(self.meta["statistics"]["transitions"])

    def episode_returns(self) -> np.ndarray:
        return episode_returns(self.fields["reward"], self.fields["valid"], self.fields["episode_start"])

    @property
    def identity(self) -> str:
        return f"{self.meta['suite']}/{self.meta['task']}/{self.meta['quality']}"

"""The dataset store: ``meta.json`` plus one memory-mapped ``.npy`` per field.

Rows are the time steps of episodes laid back to back. Every episode ends with one
extra row that holds its final observation, so the successor of a valid row ``r`` is
always row ``r + 1`` and no ``next_*`` copies are stored (DESIGN.md, "Store format").

Writers go through :func:`write_dataset`, which validates the arrays, writes them into
a temporary directory beside the target and renames it into place, so a failed write
leaves nothing behind. Readers go through :meth:`Dataset.open`, which checks
``meta.json``, every field's presence, shape and dtype, every file's sha256 against
``meta.json``, finiteness and the row invariants, and raises a
:class:`~marlbench.errors.DatasetError` naming the file and the field otherwise.

The sha256 of each file and the outcome of the content checks are cached in
``.checked.json`` inside the dataset, keyed by each file's size, mtime, ctime and inode,
so a dataset is read in full once; a changed file or ``meta.json`` is checked again.
A read-only dataset directory is checked in full on every open.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marlbench.errors import DatasetError, DatasetExistsError, DatasetWriteError
from marlbench.spec import EnvSpec

FORMAT_VERSION = 1
META_FILE = "meta.json"
CACHE_FILE = ".checked.json"
CACHE_VERSION = 1
"""Bump when :meth:`Dataset.open` checks more, so results cached by older checks are not reused."""
FLOAT_FIELDS = ("obs", "state", "reward")
SPEC_INTEGERS = ("n_agents", "obs_dim", "state_dim", "episode_limit")
STATISTICS_COUNTS = ("episodes", "transitions", "terminals")
STATISTICS_RETURNS = ("return_mean", "return_std", "return_min", "return_max")
_CHUNK_ROWS = 1 << 16
_WRITE_BLOCK = 1 << 24
_MISSING = object()


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
    _check_structure(fields, spec, where)
    _check_content(fields, spec, where)


def _check_structure(fields: Mapping[str, np.ndarray], spec: EnvSpec, where: Path) -> None:
    """Every field present with its dtype and shape: what the files' headers tell."""
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


def _check_content(fields: Mapping[str, np.ndarray], spec: EnvSpec, where: Path) -> None:
    """Finiteness and row invariants: a full read of the data."""
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


def _check_statistics_match(statistics: Mapping[str, Any], fields: Mapping[str, np.ndarray], meta_path: Path) -> None:
    """``meta.json``'s statistics are those of the data (extra entries are not checked)."""
    for key, value in dataset_statistics(fields).items():
        recorded = statistics[key]
        same = (
            recorded == value if key in STATISTICS_COUNTS else math.isclose(recorded, value, rel_tol=1e-6, abs_tol=1e-6)
        )
        if not same:
            raise DatasetError(meta_path, f"statistics.{key}", f"{value} (computed from the data)", recorded)


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


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Every byte of ``data`` through ``os.write``: the one call every store write goes through."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_file(path: Path, blocks: Iterator[bytes | memoryview], flags: int) -> None:
    fd = os.open(path, os.O_WRONLY | flags, 0o666)
    try:
        for block in blocks:
            _write_all(fd, block)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so readers never see half a file."""
    tmp = atomic_temp_file(path)
    try:
        _write_file(tmp, iter([text.encode()]), os.O_TRUNC)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _npy_blocks(array: np.ndarray, digest: Any) -> Iterator[memoryview]:
    """The bytes ``np.save`` writes for a C-contiguous ``array``, in blocks, fed to ``digest``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    raw = memoryview(array.reshape(-1).view(np.uint8))
    for block in [header.getbuffer()] + [raw[i : i + _WRITE_BLOCK] for i in range(0, raw.nbytes, _WRITE_BLOCK)]:
        digest.update(block)
        yield block


def check_write_target(root: Path, overwrite: bool) -> None:
    """Refuse to write a dataset over something at ``root`` unless ``overwrite``.

    An absent ``root`` or an empty directory is written without asking; a dataset, a
    directory holding other files, or a file raise ``DatasetExistsError`` (a
    ``FileExistsError``) saying what is there and what to do."""
    if overwrite or not os.path.lexists(root):
        return
    replace = "pass overwrite=True (the --overwrite option of marlbench data generate/import/download) to replace it"
    if not root.is_dir():
        raise DatasetExistsError(
            root,
            "dataset",
            "a directory for the dataset, or nothing",
            "a file",
            f"nothing was written; remove it with: rm {shlex.quote(str(root))}, or {replace}",
        )
    entries = sorted(os.listdir(root))
    if not entries:
        return
    if META_FILE in entries:
        raise DatasetExistsError(
            root, "dataset", "no dataset at the target", f"a dataset ({_identity_of(root)})", replace
        )
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise DatasetExistsError(
        root,
        "dataset",
        "an empty directory or a dataset with meta.json",
        f"a directory without meta.json holding {len(entries)} entries ({shown}), so not a dataset "
        "(perhaps an interrupted copy, or a dataset whose meta.json was deleted)",
        f"nothing was written; look at what it holds, then remove it with: rm -r {shlex.quote(str(root))}, "
        f"or {replace}",
    )


def _identity_of(root: Path) -> str:
    try:
        meta = json.loads((root / META_FILE).read_text())
        return f"{meta['suite']}/{meta['task']}/{meta['quality']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "with an unreadable meta.json"


def _make_directories(directory: Path) -> list[Path]:
    """``mkdir -p directory``; returns the directories it created, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        created.append(path)
    return created


def _write_failure(root: Path, target: str | None, error: OSError, nbytes: int) -> DatasetWriteError:
    """The error for an ``OSError`` while writing file ``target`` of ``root`` (None: while
    creating, staging or renaming the directory; the directory named is the one refused)."""
    code = errno.errorcode.get(error.errno or 0, "no errno")
    found = f"{error.strerror or error} ({code})"
    directory = Path(error.filename).parent if target is None and error.filename else root.parent
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        expected = f"free space in {directory} for the dataset ({nbytes / 2**20:.1f} MiB)"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        expected = f"write permission in {directory} (the dataset is staged there and renamed into place)"
    else:
        expected = f"to write {target or 'the dataset directory'} in {directory}"
    path, field = (root, "dataset") if target is None else (root / target, target.removesuffix(".npy"))
    return DatasetWriteError(path, field, expected, found, f"nothing was written; {root} is unchanged")


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
    the data came from (e.g. ``{"observation_mode": "paper"}``). An ``OSError`` (no space,
    no permission) becomes a ``DatasetWriteError`` naming the directory; either way the
    staging directory and any parent directories this call created are removed."""
    root = Path(root)
    check_write_target(root, overwrite)
    validate_fields(fields, spec, root)
    layout = field_layout(spec)
    nbytes = sum(int(fields[name].nbytes) for name in layout)
    created: list[Path] = []
    staging: Path | None = None
    target: str | None = None
    try:
        created = _make_directories(root.parent)
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.writing-"))
        os.chmod(staging, 0o777 & ~_current_umask())
        files: dict[str, dict[str, Any]] = {}
        for name in layout:
            target = f"{name}.npy"
            array = np.ascontiguousarray(fields[name])
            digest = hashlib.sha256()
            _write_file(staging / target, _npy_blocks(array, digest), os.O_CREAT | os.O_EXCL)
            files[name] = {
                "file": target,
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "sha256": digest.hexdigest(),
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
        target = META_FILE
        write_json_atomic(staging / META_FILE, meta)
        _store_cache(staging, {name: record["sha256"] for name, record in files.items()}, meta, {}, files)
        target = None
        if os.path.lexists(root):
            retired = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
            os.replace(root, retired / root.name)
            try:
                os.replace(staging, root)
            except BaseException:
                os.replace(retired / root.name, root)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, root)
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        if isinstance(error, OSError):
            raise _write_failure(root, target, error, nbytes) from error
        raise
    return Dataset.open(root)


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _content_key(meta: Mapping[str, Any]) -> str:
    """What the content checks depend on: ``meta.json`` (its sha256s pin the files' bytes)."""
    text = json.dumps({"checks": CACHE_VERSION, "meta": meta}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_cache(root: Path) -> dict[str, Any]:
    """The cache's ``{"files": {name: {"stat", "sha256"}}, "content": key}``, or ``{}``."""
    try:
        cache = json.loads((root / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict) or cache.get("version") != CACHE_VERSION or not isinstance(cache.get("files"), dict):
        return {}
    return cache


def _cached_sha256(cache: Mapping[str, Any], name: str, stat: os.stat_result) -> str | None:
    entry = cache.get("files", {}).get(name)
    if isinstance(entry, dict) and entry.get("stat") == _stat_key(stat) and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    return None


def _clock_file(root: Path) -> Path | None:
    """The cache's temporary file, or None where ``root`` is not writable. Its mtime is the
    file system's clock: a file modified no later than that tick is not cached (a change
    within the same tick would keep its mtime)."""
    try:
        return atomic_temp_file(root / CACHE_FILE)
    except OSError:
        return None


def _store_cache(
    root: Path,
    hashes: Mapping[str, str],
    meta: Mapping[str, Any],
    old: Mapping[str, Any],
    fresh: Collection[str],
    tmp: Path | None = None,
) -> None:
    """Record ``hashes`` (verified against ``meta``) and that the content checks passed, if
    ``root`` is writable and anything changed; failures to write are ignored.

    A ``fresh`` file (hashed after ``tmp`` was created) is recorded if it has not changed
    since ``tmp``'s mtime; any other file keeps its ``old`` entry while its stat matches."""
    tmp = tmp or _clock_file(root)
    if tmp is None:
        return
    try:
        clock = tmp.stat().st_mtime_ns
        files = {}
        for name, sha256 in hashes.items():
            stat = os.stat(root / f"{name}.npy")
            if (name in fresh and max(stat.st_mtime_ns, stat.st_ctime_ns) < clock) or (
                name not in fresh and _cached_sha256(old, name, stat) == sha256
            ):
                files[name] = {"stat": _stat_key(stat), "sha256": sha256}
        cache = {"version": CACHE_VERSION, "files": files, "content": _content_key(meta)}
        if cache != old:
            _write_file(tmp, iter([json.dumps(cache).encode()]), os.O_TRUNC)
            os.replace(tmp, root / CACHE_FILE)
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _describe(value: Any) -> str:
    """A JSON value and its JSON type, for error messages."""
    if value is _MISSING:
        return "no such key"
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}
    kind = "null" if value is None else kinds.get(type(value), "a number")
    text = json.dumps(value)
    return f"{text[:200]}{'...' if len(text) > 200 else ''} ({kind})"


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_object(meta_path: Path, field: str, value: Any, what: str) -> None:
    if not isinstance(value, dict):
        raise DatasetError(meta_path, field, f"a JSON object ({what})", _describe(value))


def _check_meta(meta: Any, meta_path: Path) -> EnvSpec:
    """Every key training, cards and verification read, with its JSON type; the spec."""
    _check_object(meta_path, "meta.json", meta, "the dataset's description")
    version = meta.get("format_version", _MISSING)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise DatasetError(meta_path, "format_version", FORMAT_VERSION, _describe(version))
    for key in ("suite", "task", "quality"):
        value = meta.get(key, _MISSING)
        if not isinstance(value, str) or not value:
            raise DatasetError(meta_path, key, "a non-empty string", _describe(value))
    spec = _check_spec(meta.get("spec", _MISSING), meta_path)
    if "env_options" in meta:
        _check_object(meta_path, "env_options", meta["env_options"], "keyword arguments of the suite's make_env")
    _check_object(meta_path, "source", meta.get("source", _MISSING), "the importer or generator and its inputs")
    _check_statistics(meta.get("statistics", _MISSING), meta_path)
    _check_file_records(meta.get("files", _MISSING), spec, meta_path)
    return spec


def _check_spec(spec: Any, meta_path: Path) -> EnvSpec:
    _check_object(meta_path, "spec", spec, "the environment spec")
    _check_values(meta_path, "spec", spec, SPEC_INTEGERS, lambda value: _is_int(value, 1), "a positive integer")
    action_type = spec.get("action_type", _MISSING)
    if action_type not in ("discrete", "continuous"):
        raise DatasetError(meta_path, "spec.action_type", "'discrete' or 'continuous'", _describe(action_type))
    needed = "n_actions" if action_type == "discrete" else "action_dim"
    for key in ("n_actions", "action_dim"):
        value = spec.get(key, None if key != needed else _MISSING)
        if not _is_int(value, 1) and (key == needed or value is not None):
            expected = "a positive integer" + ("" if key == needed else " or null")
            raise DatasetError(meta_path, f"spec.{key}", expected, _describe(value))
    for key in ("action_low", "action_high"):
        if key in spec and not _is_number(spec[key]):
            raise DatasetError(meta_path, f"spec.{key}", "a finite number", _describe(spec[key]))
    if "has_wins" in spec and not isinstance(spec["has_wins"], bool):
        raise DatasetError(meta_path, "spec.has_wins", "a boolean", _describe(spec["has_wins"]))
    try:
        return EnvSpec.from_dict(spec)
    except (TypeError, ValueError) as error:
        raise DatasetError(meta_path, "spec", "a valid environment spec", spec, str(error)) from error


def _check_statistics(statistics: Any, meta_path: Path) -> None:
    _check_object(meta_path, "statistics", statistics, "episodes, transitions, terminals and returns")
    non_negative = lambda value: _is_int(value, 0)  # noqa: E731
    _check_values(meta_path, "statistics", statistics, STATISTICS_COUNTS, non_negative, "a non-negative integer")
    _check_values(meta_path, "statistics", statistics, STATISTICS_RETURNS, _is_number, "a finite number")


def _check_values(
    meta_path: Path, section: str, values: dict, keys: tuple[str, ...], is_valid: Callable[[Any], bool], expected: str
) -> None:
    """Every ``keys`` entry of ``values`` passes ``is_valid``, or an error naming ``section.key``."""
    for key in keys:
        value = values.get(key, _MISSING)
        if not is_valid(value):
            raise DatasetError(meta_path, f"{section}.{key}", expected, _describe(value))


def _check_file_records(files: Any, spec: EnvSpec, meta_path: Path) -> None:
    _check_object(meta_path, "files", files, "a record of file, shape, dtype and sha256 per field")
    layout = field_layout(spec)
    extra = sorted(set(files) - set(layout))
    if extra:
        raise DatasetError(meta_path, f"files.{extra[0]}", f"records for the fields {sorted(layout)} only", "a record")
    for name in layout:
        record = files.get(name, _MISSING)
        _check_object(meta_path, f"files.{name}", record, "file, shape, dtype and sha256")
        if record.get("file", _MISSING) != f"{name}.npy":
            expected = f'"{name}.npy" (the file training reads, inside the dataset)'
            raise DatasetError(meta_path, f"files.{name}.file", expected, _describe(record.get("file", _MISSING)))
        shape = record.get("shape", _MISSING)
        if not isinstance(shape, list) or not all(_is_int(d, 0) for d in shape):
            raise DatasetError(meta_path, f"files.{name}.shape", "a list of non-negative integers", _describe(shape))
        if not isinstance(record.get("dtype", _MISSING), str):
            raise DatasetError(
                meta_path, f"files.{name}.dtype", "a dtype name", _describe(record.get("dtype", _MISSING))
            )
        sha256 = record.get("sha256", _MISSING)
        if not isinstance(sha256, str) or len(sha256) != 64 or not set(sha256) <= set("0123456789abcdef"):
            raise DatasetError(meta_path, f"files.{name}.sha256", "64 lowercase hex digits", _describe(sha256))


@dataclass
class Dataset:
    """An opened, validated dataset whose fields are read-only memory maps."""

    root: Path
    meta: dict[str, Any]
    spec: EnvSpec
    fields: dict[str, np.ndarray]

    @classmethod
    def open(cls, root: Path | str, *, checksums: bool = True) -> Dataset:
        """Open and check a dataset: ``meta.json``, every file's shape and dtype, every file's
        sha256 against ``meta.json``, finiteness, row invariants and the statistics.

        Each file's sha256 and the outcome of the content checks are cached in
        ``.checked.json`` (see the module docstring), so only the first open reads every
        byte. ``checksums=False`` reads no file to hash it: a file whose sha256 is not
        cached is then checked for structure and content only (for tools that inspect a
        dataset; training must keep the default)."""
        root = Path(root)
        meta_path = root / META_FILE
        if not meta_path.is_file():
            raise DatasetError(meta_path, "meta.json", "a dataset directory with meta.json", _missing_meta(root))
        try:
            meta = json.loads(meta_path.read_text())
        except OSError as error:
            raise DatasetError(meta_path, "meta.json", "a readable file", f"{error.strerror or error}") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(meta_path, "meta.json", "valid JSON", f"a parse error: {error}") from error
        spec = _check_meta(meta, meta_path)
        fields: dict[str, np.ndarray] = {}
        for name in field_layout(spec):
            path = root / f"{name}.npy"
            if not path.is_file():
                raise DatasetError(path, name, "the file to exist", "no such file")
            try:
                fields[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as error:
                raise DatasetError(path, name, "a readable .npy file", f"an unreadable file: {error}") from error
        _check_structure(fields, spec, root)
        for name, record in meta["files"].items():
            array = fields[name]
            if list(array.shape) != record["shape"] or str(array.dtype) != record["dtype"]:
                raise DatasetError(
                    root / f"{name}.npy",
                    name,
                    f"dtype {record['dtype']} shape {_shape_text(record['shape'])} (meta.json)",
                    f"dtype {array.dtype} shape {_shape_text(array.shape)}",
                )
        dataset = cls(root=root, meta=meta, spec=spec, fields=fields)
        dataset._check(use_cache=True, hash_uncached=checksums)
        return dataset

    def verify(self) -> None:
        """Re-read every file: sha256 against ``meta.json``, finiteness, row invariants and
        statistics, whatever the cache holds (the cache is then refreshed)."""
        self._check(use_cache=False, hash_uncached=True)

    def _check(self, *, use_cache: bool, hash_uncached: bool) -> None:
        """The checks that read the data: sha256s (from the cache where the files' stat
        matches) first, then content; a content error is raised before a sha256 mismatch
        because it says more."""
        cache = _read_cache(self.root)
        hashes: dict[str, str] = {}
        uncached = []
        for name in self.meta["files"]:
            cached = _cached_sha256(cache, name, os.stat(self.root / f"{name}.npy")) if use_cache else None
            if cached is None:
                uncached.append(name)
            else:
                hashes[name] = cached
        tmp = _clock_file(self.root) if uncached and hash_uncached else None
        try:
            if hash_uncached:
                hashes.update((name, sha256_file(self.root / f"{name}.npy")) for name in uncached)
            mismatched = [name for name, sha256 in hashes.items() if sha256 != self.meta["files"][name]["sha256"]]
            proven = len(hashes) == len(self.meta["files"]) and not mismatched
            content_cached = proven and use_cache and cache.get("content") == _content_key(self.meta)
            if not content_cached:
                _check_content(self.fields, self.spec, self.root)
                _check_statistics_match(self.meta["statistics"], self.fields, self.root / META_FILE)
            for name in mismatched:
                raise DatasetError(
                    self.root / f"{name}.npy",
                    name,
                    f"sha256 {self.meta['files'][name]['sha256']} (meta.json)",
                    f"sha256 {hashes[name]}",
                    "the file's bytes are not those the dataset was written with",
                )
            if proven and (uncached or not content_cached):
                _store_cache(self.root, hashes, self.meta, cache, uncached, tmp)
                tmp = None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

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


def _missing_meta(root: Path) -> str:
    if not root.exists():
        return f"no such directory {root}"
    if not root.is_dir():
        return f"{root} is a file, not a directory"
    entries = sorted(os.listdir(root))
    if not entries:
        return "an empty directory"
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    return f"no meta.json; the directory holds {len(entries)} entries ({shown})"

"""What every importer shares: the converted result, shape checks that name the source
file and key, and the task spec an import is checked against.

An importer reads files in some paper's layout and returns :class:`Converted`: store
fields (see :mod:`marlbench.data.store`), the source files it read, and a list of
human-readable conventions it applied. :func:`marlbench.data.importers.import_dataset`
then checks the action range, hashes the source files and writes the dataset. Every
dimension check happens while converting, before anything is written.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from marlbench.errors import ConfigError, DatasetError
from marlbench.spec import EnvSpec

CHUNK_ROWS = 1 << 16
"""Rows read from a source file at a time, so converting a large file needs little extra memory."""


@dataclass
class Converted:
    """An importer's result, ready for :func:`~marlbench.data.store.write_dataset`.

    ``origin`` maps a store field to the (source file, key) it came from, so range and
    finiteness errors name the source rather than the dataset being written."""

    fields: dict[str, np.ndarray]
    files: list[Path]
    conventions: list[str]
    origin: dict[str, tuple[Path, str]] = field(default_factory=dict)
    action_hint: str = ""
    """Appended to the out-of-range actions error (e.g. which option rescales actions)."""


class Importer(abc.ABC):
    """Converts one external dataset layout into store fields."""

    name: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    """Keyword options :meth:`convert` accepts beyond the spec (e.g. ``episode_limit``)."""

    @abc.abstractmethod
    def convert(self, source: Path, spec: EnvSpec, **options: Any) -> Converted:
        """Read ``source`` and return store fields; raise ``DatasetError`` on any mismatch."""

    def check_options(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ConfigError(f"import format '{self.name}' has no option '{unknown[0]}' (options: {allowed})")


def shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def shapes_text(shapes: Sequence[Sequence[Any]]) -> str:
    texts = [f"shape {shape_text(s)}" for s in shapes]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


def match_shape(
    path: Path, key: str, found: tuple[int, ...], allowed: Sequence[Sequence[int | str]], sizes: dict[str, int]
) -> int:
    """Index of the first pattern in ``allowed`` that ``found`` matches, else ``DatasetError``.

    A pattern entry is an int (must be equal) or a symbol such as ``"T"``: bound to the
    found size on first use (recorded in ``sizes``), compared on later uses."""
    for index, pattern in enumerate(allowed):
        if len(pattern) != len(found):
            continue
        bound = dict(sizes)
        ok = True
        for want, got in zip(pattern, found, strict=True):
            if isinstance(want, str):
                if bound.setdefault(want, got) != got:
                    ok = False
                    break
            elif want != got:
                ok = False
                break
        if ok:
            sizes.update(bound)
            return index
    shown = [[f"{d}={sizes[d]}" if isinstance(d, str) and d in sizes else d for d in pattern] for pattern in allowed]
    raise DatasetError(path, key, shapes_text(shown), f"shape {shape_text(found)}")


def require_keys(path: Path, present: Sequence[str], needed: Sequence[str]) -> None:
    for key in needed:
        if key not in present:
            raise DatasetError(path, key, "the key to be present", f"keys {sorted(present)}")


REAL_KINDS = "biuf"
"""dtype kinds a numeric source array may have (bool, signed, unsigned, float); complex,
string, bytes, object and structured arrays are refused rather than cast."""


def check_dtype(path: Path, key: str, dtype: np.dtype, *, continuous_actions: bool = False) -> None:
    """Refuse a source array that is not real numbers, or continuous actions that are not floats.

    No supported format stores continuous (MaMuJoCo) actions as integers: integer actions
    are discrete action indices (a SMAC-style file) or the wrong key, and casting them
    would train on actions in {-1, 0, 1}, so they are refused rather than converted."""
    if continuous_actions and dtype.kind != "f":
        raise DatasetError(
            path,
            key,
            "floating-point actions (the task's actions are continuous)",
            f"dtype {dtype}",
            "integer actions are discrete action indices; this file holds another task's data or another key"
            if dtype.kind in "biu"
            else "",
        )
    if dtype.kind not in REAL_KINDS:
        raise DatasetError(path, key, "real numbers (a bool, integer or float dtype)", f"dtype {dtype}")


def time_limit_terminal(done: bool, transitions: int, episode_limit: int) -> bool:
    """A done flag is a true terminal unless the episode ran the full time limit: MaMuJoCo
    (and Gym's TimeLimit) report done when the limit is reached, and a true terminal on
    exactly the last step cannot be told apart, so it counts as a time limit."""
    return bool(done) and transitions < episode_limit


def check_episode_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"episode_limit must be a positive integer, got {value!r}")
    return int(value)


def gather_rows(
    array: Any,
    rows: np.ndarray,
    dtype: np.dtype | type = np.float32,
    transform: Any = None,
) -> np.ndarray:
    """``array[rows]`` for a non-decreasing ``rows`` (repeats allowed), reading ``array``
    (an h5py dataset, a memory map or an array) in chunks of ``CHUNK_ROWS``.

    ``transform`` maps a chunk of source rows to the output layout (e.g. flattening the
    per-agent state)."""
    rows = np.asarray(rows, dtype=np.int64)
    out: np.ndarray | None = None
    total = int(array.shape[0])
    for begin in range(0, total, CHUNK_ROWS):
        stop = min(total, begin + CHUNK_ROWS)
        lo, hi = np.searchsorted(rows, [begin, stop], side="left")
        if lo == hi:
            continue
        block = np.asarray(array[begin:stop])
        if transform is not None:
            block = transform(block)
        if out is None:
            out = np.empty((rows.shape[0],) + block.shape[1:], dtype=dtype)
        out[lo:hi] = block[rows[lo:hi] - begin]
    if out is None:
        probe = np.asarray(array[:1])
        if transform is not None:
            probe = transform(probe)
        out = np.empty((rows.shape[0],) + probe.shape[1:], dtype=dtype)
    return out


def rows_from_episodes(starts: np.ndarray, transitions: np.ndarray, final_offsets: np.ndarray) -> np.ndarray:
    """Source row of every store row: episode e covers source rows ``starts[e] + 0 ..
    transitions[e] - 1`` and its final row is source row ``starts[e] + final_offsets[e]``."""
    sizes = transitions + 1
    episode_of_row = np.repeat(np.arange(starts.shape[0]), sizes)
    first_row = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offset = np.arange(int(sizes.sum())) - first_row[episode_of_row]
    final = offset == transitions[episode_of_row]
    offset = np.where(final, final_offsets[episode_of_row], offset)
    return starts[episode_of_row] + offset


def store_fields(
    *,
    obs: np.ndarray,
    state: np.ndarray,
    actions: np.ndarray,
    reward: np.ndarray,
    transitions: np.ndarray,
    terminated: np.ndarray,
) -> dict[str, np.ndarray]:
    """Store fields from rows already laid out episode by episode (``transitions[e] + 1``
    rows each, the last one the final row). Actions and rewards of final rows are zeroed
    (``actions`` in place when it is a writeable float32 array)."""
    sizes = np.asarray(transitions, dtype=np.int64) + 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    rows = int(sizes.sum())
    valid = np.ones(rows, dtype=bool)
    valid[starts + sizes - 1] = False
    terminal = np.zeros(rows, dtype=bool)
    terminal[(starts + sizes - 2)[np.asarray(terminated, dtype=bool)]] = True
    actions = np.asarray(actions, dtype=np.float32)
    if not actions.flags.writeable:
        actions = actions.copy()
    actions[~valid] = 0.0
    reward = np.where(valid, np.asarray(reward, dtype=np.float32), np.float32(0.0)).astype(np.float32)
    return {
        "obs": np.asarray(obs, dtype=np.float32),
        "state": np.asarray(state, dtype=np.float32),
        "actions": actions,
        "reward": reward,
        "terminal": terminal,
        "valid": valid,
        "episode_start": starts,
    }

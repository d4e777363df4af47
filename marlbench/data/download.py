"""Downloading the papers' datasets, resumably and verified, then importing them.

Each suite says where the authors published its datasets (:meth:`Suite.download_sources
<marlbench.suites.Suite.download_sources>`: :class:`SourceEntry` records by task and quality;
MaMuJoCo's are in :mod:`marlbench.suites.mamujoco.download`). :func:`download` streams a
file to ``<file>.part``, resumes an interrupted transfer with an HTTP ``Range`` request,
checks the size and sha256 where they are known, and only then renames it to its final
name, so a file under the final name is always complete.
:func:`download_and_import` downloads into ``<data>/_downloads/`` and imports the file
with :func:`marlbench.data.importers.import_dataset`.

The authors' hosts are often unreachable (and dataset links die); then the error says
where to get the file by hand, where to put it, and the exact ``marlbench data import``
command. ``MARLBENCH_DOWNLOAD_BASE_URL`` (or ``base_url=``) replaces the host with a
mirror that serves the same file names (``<base>/<file name>``); the tests use a local server.
"""

from __future__ import annotations

import http.client
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from marlbench.data.store import Dataset, check_write_target, sha256_file
from marlbench.errors import MarlbenchError, UnknownNameError
from marlbench.suites import get_suite
from marlbench.workspace import dataset_root

BASE_URL_ENV_VAR = "MARLBENCH_DOWNLOAD_BASE_URL"
DOWNLOADS_DIR = "_downloads"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class SourceEntry:
    """One published copy of a dataset file."""

    suite: str
    task: str
    quality: str
    file_name: str
    """The file's name as the papers give it, e.g. ``Hopper-v2-3x1-medium.hdf5``."""
    url: str
    format: str
    """The import format (a key of the suite's :meth:`~marlbench.suites.Suite.importers`)."""
    page: str
    """Where a person can get the file by hand."""
    sha256: str | None = None
    size: int | None = None
    note: str = ""

    def url_for(self, base_url: str | None = None) -> str:
        """The URL to fetch: ``<base_url>/<file name>`` for a mirror, else :attr:`url`."""
        if base_url:
            return f"{base_url.rstrip('/')}/{urllib.parse.quote(self.file_name)}"
        return self.url


class DownloadError(MarlbenchError):
    """A download failed; the message says why and what to do."""


class HostUnreachableError(DownloadError):
    """The host could not be reached; the message holds the manual instructions."""


class DownloadInterruptedError(DownloadError):
    """The transfer stopped early; the ``.part`` file is kept and a new call resumes it."""


class VerificationError(DownloadError):
    """The downloaded file's size or sha256 is not the published one; nothing was kept."""


class _Interrupted(Exception):
    pass


class _Unreachable(Exception):
    pass


def manual_instructions(entry: SourceEntry, dest_dir: Path, data_dir: Path | str | None = None) -> str:
    """How to get, place and import ``entry`` by hand."""
    target = Path(dest_dir) / entry.file_name
    checks = []
    if entry.sha256:
        checks.append(f"sha256 {entry.sha256}")
    if entry.size:
        checks.append(f"{entry.size} bytes")
    check_text = f" (expected {', '.join(checks)})" if checks else ""
    command = [
        "marlbench",
        "data",
        "import",
        entry.format,
        str(target),
        "--suite",
        entry.suite,
        "--task",
        entry.task,
        "--quality",
        entry.quality,
    ]
    if data_dir is not None:
        command += ["--data", str(data_dir)]
    page = entry.page + (f", {entry.note}" if entry.note else "")
    return (
        "Get the file by hand instead:\n"
        f"  1. Open {page} and download '{entry.file_name}'{check_text}.\n"
        f"  2. Place it at {target} (a later download finds it there and skips the network), "
        "or anywhere else.\n"
        f"  3. Import it (with its path if you placed it elsewhere):\n"
        f"       {shlex.join(command)}\n"
        f"A mirror serving the same file names can be used by setting {BASE_URL_ENV_VAR}=<url>."
    )


def _check_file(path: Path, entry: SourceEntry) -> str | None:
    """None if ``path`` has the published size and sha256 (where known), else the problem."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"its size is {size} bytes, expected {entry.size}"
    if entry.sha256 is not None:
        found = sha256_file(path)
        if found.lower() != entry.sha256.lower():
            return f"its sha256 is {found}, expected {entry.sha256}"
    return None


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/total`` or ``bytes */total`` header."""
    if not header or not header.strip().startswith("bytes"):
        return None, None
    spec = header.strip()[5:].strip()
    span, _, total = spec.partition("/")
    first = None
    if span != "*":
        try:
            first = int(span.split("-", 1)[0])
        except ValueError:
            first = None
    try:
        total_size = int(total)
    except ValueError:
        total_size = None
    return first, total_size


def _progress_bar(enabled: bool, total: int | None, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not (enabled and sys.stderr.isatty()),
        file=sys.stderr,
    )


def _fetch(url: str, part: Path, *, timeout: float, progress: bool, name: str) -> None:
    """One attempt: (re)start or resume ``part`` from ``url``. Raises ``_Interrupted`` if the
    transfer stopped early (``part`` keeps what arrived) and ``_Unreachable`` if the host
    could not be reached."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "marlbench"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        with error:
            if error.code == 416 and have:
                _, total = _content_range(error.headers.get("Content-Range"))
                if total == have:
                    return  # the .part already holds the whole file
                part.unlink()
                raise _Interrupted(f"the server refused to resume at byte {have}; starting over") from error
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _Unreachable(str(reason) or type(reason).__name__) from error
    with response:
        status = getattr(response, "status", None)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != have:
                part.unlink()
                raise _Interrupted(f"the server resumed at byte {first}, not {have}; starting over")
            mode = "ab"
            if total is None and length is not None:
                total = have + length
        else:
            # No Range sent, or the server ignored it (200): start from the beginning.
            have, mode, total = 0, "wb", length
        try:
            with open(part, mode) as out, _progress_bar(progress, total, have, name) as bar:
                while True:
                    block = response.read(CHUNK_BYTES)
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
        except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as error:
            raise _Interrupted(f"the transfer broke off: {error or type(error).__name__}") from error
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"the connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        part.unlink()
        raise _Interrupted(f"received {size} bytes, more than the {total} announced; starting over")


def download(
    entry: SourceEntry,
    dest_dir: Path | str,
    *,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> Path:
    """Download ``entry`` to ``dest_dir/<file name>`` and return that path.

    Streams to ``<file name>.part`` and resumes an existing ``.part`` with a ``Range``
    request (restarting if the server ignores it); an interrupted transfer is resumed up
    to ``retries`` times, after which ``DownloadInterruptedError`` leaves the ``.part`` for
    a later call. The size and sha256 are checked where known, and only a verified file
    is renamed to its final name (a mismatch deletes the ``.part`` and raises
    ``VerificationError``). An existing final file is verified and returned without
    downloading. ``base_url`` (default: ``$MARLBENCH_DOWNLOAD_BASE_URL``) fetches
    ``<base_url>/<file name>`` instead of the published URL. An unreachable host raises
    ``HostUnreachableError`` with instructions for getting the file by hand."""
    dest_dir = Path(dest_dir)
    final = dest_dir / entry.file_name
    part = dest_dir / f"{entry.file_name}.part"
    if final.is_file():
        problem = _check_file(final, entry)
        if problem is None:
            return final
        raise VerificationError(f"{final} already exists but {problem}; delete it to download the file again")
    dest_dir.mkdir(parents=True, exist_ok=True)
    url = entry.url_for(base_url or os.environ.get(BASE_URL_ENV_VAR) or None)
    attempts = 0
    while True:
        try:
            _fetch(url, part, timeout=timeout, progress=progress, name=entry.file_name)
            break
        except _Unreachable as error:
            host = urllib.parse.urlsplit(url).netloc or url
            raise HostUnreachableError(
                f"Could not reach {host} to download {entry.file_name} ({error}).\n"
                + manual_instructions(entry, dest_dir)
            ) from error
        except _Interrupted as error:
            attempts += 1
            if attempts > retries:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadInterruptedError(
                    f"downloading {url} was interrupted ({error}); {kept} bytes are kept in {part} "
                    "and the next download resumes from there"
                ) from error
        except DownloadError as error:
            raise DownloadError(f"{error}\n{manual_instructions(entry, dest_dir)}") from error
    problem = _check_file(part, entry)
    if problem is not None:
        part.unlink()
        raise VerificationError(
            f"the download of {entry.file_name} from {url} failed verification: {problem}; the partial file "
            "was deleted. Try again, or get the file by hand.\n" + manual_instructions(entry, dest_dir)
        )
    os.replace(part, final)
    return final


def known_source(suite: str, task: str, quality: str) -> tuple[SourceEntry, ...]:
    """The published copies of ``suite/task/quality`` (:meth:`Suite.download_sources
    <marlbench.suites.Suite.download_sources>`), or ``UnknownNameError``."""
    sources = get_suite(suite).download_sources()
    if (task, quality) not in sources:
        known = [f"{suite}/{known_task}/{known_quality}" for known_task, known_quality in sources]
        raise UnknownNameError("downloadable dataset", f"{suite}/{task}/{quality}", known)
    return sources[(task, quality)]


def download_and_import(
    suite: str,
    task: str,
    quality: str,
    *,
    data_dir: Path | str,
    cache_dir: Path | str | None = None,
    base_url: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> Dataset:
    """Download a known dataset into ``cache_dir`` (default ``<data>/_downloads/``) and
    import it at ``<data>/<suite>/<task>/<quality>/``. The downloaded file is kept, so a
    second import needs no network. ``data_dir`` is the resolved data root
    (:class:`marlbench.workspace.Workspace`'s ``data``)."""
    from marlbench.data.importers import import_dataset

    entries = known_source(suite, task, quality)
    data = Path(data_dir)
    cache = Path(cache_dir) if cache_dir is not None else data / DOWNLOADS_DIR
    root = dataset_root(data, suite, task, quality)
    check_write_target(root, overwrite)
    failures: list[str] = []
    for entry in entries:
        try:
            path = download(entry, cache, base_url=base_url, progress=progress, timeout=timeout, retries=retries)
        except HostUnreachableError as error:
            failures.append(str(error).split("\n", 1)[0])
            continue
        return import_dataset(entry.format, path, root, suite=suite, task=task, quality=quality, overwrite=overwrite)
    raise HostUnreachableError("\n".join(failures) + "\n" + manual_instructions(entries[0], cache, data_dir))

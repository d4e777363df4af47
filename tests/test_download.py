"""Downloads against a local HTTP server on 127.0.0.1: verification, resume, and the
instructions given when the host cannot be reached."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from marlbench.data import download as dl
from marlbench.data.download import (
    BASE_URL_ENV_VAR,
    DownloadInterruptedError,
    HostUnreachableError,
    SourceEntry,
    VerificationError,
    download,
    download_and_import,
)
from marlbench.data.store import sha256_file
from marlbench.errors import DatasetExistsError, MarlbenchError, UnknownNameError
from marlbench.suites import get_suite
from marlbench.suites.mamujoco.download import OMIGA_SHARE, SOURCES

h5py = pytest.importorskip("h5py")
pytestmark = pytest.mark.timeout(60)

FILE_NAME = "Hopper-v2-3x1-medium.hdf5"
KEY = ("mamujoco", "hopper", "medium")
SOURCE_KEY = KEY[1:]
"""The key of ``KEY`` in the MaMuJoCo suite's download sources: (task, quality)."""


def omiga_file_bytes(tmp_path: Path) -> bytes:
    """A small OMIGA-layout hdf5 (Hopper paper mode: 3 agents, 14 dims): two episodes,
    the first ending in a done flag on its final-observation row."""
    rng = np.random.default_rng(1)
    rows = 12
    obs = rng.normal(size=(rows, 3, 14)).astype(np.float32)
    done = np.zeros((rows, 3), dtype=np.float32)
    done[6] = 1.0
    path = tmp_path / "source" / "built.hdf5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f["o"] = obs
        f["s"] = obs
        f["a"] = rng.uniform(-1, 1, size=(rows, 3, 1)).astype(np.float32)
        f["r"] = rng.normal(size=(rows, 1)).astype(np.float32)
        f["d"] = done
    return path.read_bytes()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state = self.server.state  # type: ignore[attr-defined]
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.lstrip("/"))
        range_header = self.headers.get("Range")
        with state["lock"]:
            state["requests"].append({"name": name, "range": range_header})
            first = sum(r["name"] == name for r in state["requests"]) == 1
        data = state["files"].get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if range_header and not state["ignore_range"]:
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            assert match, range_header
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if state["cut_first"] and first:
            # announce the whole body, send half, then close the connection
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@contextmanager
def serve(files: dict[str, bytes], *, cut_first: bool = False, ignore_range: bool = False) -> Iterator[dict]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    state = {
        "files": files,
        "cut_first": cut_first,
        "ignore_range": ignore_range,
        "requests": [],
        "lock": threading.Lock(),
        "url": f"http://127.0.0.1:{server.server_address[1]}",
    }
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def entry_for(data: bytes, **changes) -> SourceEntry:
    base = SOURCES[SOURCE_KEY][0]
    values = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), **changes}
    return dataclasses.replace(base, **values)


@pytest.fixture
def payload(tmp_path: Path) -> bytes:
    return omiga_file_bytes(tmp_path)


def test_known_sources_name_the_papers_files() -> None:
    assert get_suite("mamujoco").download_sources() is SOURCES and len(SOURCES) == 12
    assert get_suite("matrix").download_sources() == {}
    entry = SOURCES[("halfcheetah", "medium-replay")][0]
    assert entry.file_name == "HalfCheetah-v2-6x1-medium-replay.hdf5"
    assert entry.format == "omiga-hdf5" and entry.page == OMIGA_SHARE
    assert entry.url == OMIGA_SHARE + "files/?p=%2FHalfCheetah-v2-6x1-medium-replay.hdf5&dl=1"
    assert SOURCES[("ant", "expert")][0].file_name == "Ant-v2-2x4-expert.hdf5"
    assert entry.url_for("http://mirror/x/") == "http://mirror/x/HalfCheetah-v2-6x1-medium-replay.hdf5"
    with pytest.raises(UnknownNameError):
        download_and_import("mamujoco", "hopper", "good", data_dir="unused")


def test_download_verifies_and_imports(tmp_path: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SOURCES, SOURCE_KEY, (entry_for(payload),))
    data = tmp_path / "data"
    with serve({FILE_NAME: payload}) as server:
        monkeypatch.setenv(BASE_URL_ENV_VAR, server["url"])
        ds = download_and_import(*KEY, data_dir=data, progress=False, timeout=5)
    cached = data / "_downloads" / FILE_NAME
    assert cached.read_bytes() == payload and not cached.with_name(FILE_NAME + ".part").exists()
    assert server["requests"] == [{"name": FILE_NAME, "range": None}]
    assert ds.root == data / "mamujoco" / "hopper" / "medium"
    assert ds.meta["source"]["files"][0] == {
        "name": FILE_NAME,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    assert ds.n_episodes == 2 and ds.meta["env_options"] == {"observation_mode": "paper"}

    # a second import finds the cached, verified file: no server needed
    again = download_and_import(*KEY, data_dir=data, base_url=closed_port_url(), overwrite=True, progress=False)
    assert again.meta["source"]["files"] == ds.meta["source"]["files"]


def test_an_empty_target_folder_is_filled_and_a_leftover_one_refused_before_downloading(
    tmp_path: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SOURCES, SOURCE_KEY, (entry_for(payload),))
    empty = tmp_path / "data" / "mamujoco" / "hopper" / "medium"
    empty.mkdir(parents=True)
    with serve({FILE_NAME: payload}) as server:
        ds = download_and_import(*KEY, data_dir=tmp_path / "data", base_url=server["url"], progress=False, timeout=5)
    assert ds.root == empty and ds.n_episodes == 2

    leftover = tmp_path / "other" / "mamujoco" / "hopper" / "medium"
    leftover.mkdir(parents=True)
    (leftover / "obs.npy").write_bytes(b"half a copy")
    with pytest.raises(DatasetExistsError, match="a directory without meta.json holding 1 entries") as caught:
        download_and_import(*KEY, data_dir=tmp_path / "other", base_url=closed_port_url(), progress=False)
    assert f"rm -r {leftover}" in str(caught.value)
    assert not (tmp_path / "other" / "_downloads").exists()


def test_interrupted_download_resumes_with_range(tmp_path: Path, payload: bytes) -> None:
    entry = entry_for(payload)
    dest = tmp_path / "cache"
    part = dest / (FILE_NAME + ".part")
    with serve({FILE_NAME: payload}, cut_first=True) as server:
        with pytest.raises(DownloadInterruptedError, match="next download resumes"):
            download(entry, dest, base_url=server["url"], progress=False, timeout=5, retries=0)
        half = len(payload) // 2
        assert part.stat().st_size == half and not (dest / FILE_NAME).exists()
        path = download(entry, dest, base_url=server["url"], progress=False, timeout=5, retries=0)
    assert [r["range"] for r in server["requests"]] == [None, f"bytes={half}-"]
    assert path == dest / FILE_NAME and sha256_file(path) == entry.sha256
    assert not part.exists()


def test_interrupted_download_resumes_within_one_call(tmp_path: Path, payload: bytes) -> None:
    entry = entry_for(payload)
    with serve({FILE_NAME: payload}, cut_first=True) as server:
        path = download(entry, tmp_path, base_url=server["url"], progress=False, timeout=5, retries=1)
    assert [r["range"] for r in server["requests"]] == [None, f"bytes={len(payload) // 2}-"]
    assert path.read_bytes() == payload


def test_server_ignoring_range_restarts(tmp_path: Path, payload: bytes) -> None:
    entry = entry_for(payload)
    part = tmp_path / (FILE_NAME + ".part")
    part.write_bytes(b"stale bytes from elsewhere")
    with serve({FILE_NAME: payload}, ignore_range=True) as server:
        path = download(entry, tmp_path, base_url=server["url"], progress=False, timeout=5)
    assert server["requests"][0]["range"] == f"bytes={len(b'stale bytes from elsewhere')}-"
    assert path.read_bytes() == payload and not part.exists()


def test_complete_part_is_finished_after_416(tmp_path: Path, payload: bytes) -> None:
    entry = entry_for(payload)
    (tmp_path / (FILE_NAME + ".part")).write_bytes(payload)
    with serve({FILE_NAME: payload}) as server:
        path = download(entry, tmp_path, base_url=server["url"], progress=False, timeout=5)
    assert server["requests"] == [{"name": FILE_NAME, "range": f"bytes={len(payload)}-"}]
    assert path.read_bytes() == payload


@pytest.mark.parametrize("field", ["sha256", "size"])
def test_verification_failure_leaves_no_file(tmp_path: Path, payload: bytes, field: str) -> None:
    entry = entry_for(payload, **({"sha256": "0" * 64} if field == "sha256" else {"size": len(payload) + 1}))
    with serve({FILE_NAME: payload}) as server:
        with pytest.raises(VerificationError, match="failed verification") as caught:
            download(entry, tmp_path, base_url=server["url"], progress=False, timeout=5)
    assert "marlbench data import omiga-hdf5" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_missing_file_on_server_gives_instructions(tmp_path: Path, payload: bytes) -> None:
    with serve({}) as server:
        with pytest.raises(MarlbenchError, match="HTTP 404") as caught:
            download(entry_for(payload), tmp_path, base_url=server["url"], progress=False, timeout=5)
    assert OMIGA_SHARE in str(caught.value) and not (tmp_path / FILE_NAME).exists()


def test_unreachable_host_says_how_to_get_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BASE_URL_ENV_VAR, raising=False)
    data = tmp_path / "data"
    with pytest.raises(HostUnreachableError) as caught:
        download_and_import(*KEY, data_dir=data, base_url=closed_port_url(), progress=False, timeout=5)
    message = str(caught.value)
    assert isinstance(caught.value, MarlbenchError)
    assert "Could not reach 127.0.0.1" in message
    assert OMIGA_SHARE in message and f"'{FILE_NAME}'" in message
    cache_file = data / "_downloads" / FILE_NAME
    assert f"Place it at {cache_file}" in message
    assert (
        f"marlbench data import omiga-hdf5 {cache_file} --suite mamujoco --task hopper --quality medium --data {data}"
        in message
    )
    assert BASE_URL_ENV_VAR in message
    assert not (data / "mamujoco").exists() and not cache_file.exists()


def test_default_url_is_the_published_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without a base URL the catalog's URL is requested (stubbed here: no network in tests)."""
    seen = []

    def fake_urlopen(request, timeout):
        seen.append(request.full_url)
        raise dl.urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.delenv(BASE_URL_ENV_VAR, raising=False)
    monkeypatch.setattr(dl.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(HostUnreachableError, match="Could not reach cloud.tsinghua.edu.cn"):
        download(SOURCES[SOURCE_KEY][0], tmp_path, progress=False)
    assert seen == [SOURCES[SOURCE_KEY][0].url]

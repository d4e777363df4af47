"""Data faults a hostile user found (issue #13 §7): training checks what `data verify` checks,
meta.json and write faults are errors naming file, field, expected and found, and every
suggested fix works when a test runs it."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marlbench.cli import main
from marlbench.data import store
from marlbench.data.store import CACHE_FILE, Dataset, write_dataset
from marlbench.errors import DatasetError, DatasetExistsError, DatasetWriteError
from marlbench.suites import get_suite

TASK = ("matrix", "xor", "ab")
RUN = ["run", "--algo", "bc", "--suite", "matrix", "--task", "xor", "--quality", "ab", "--profile", "smoke"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def generate(root: Path, **kwargs: Any) -> Dataset:
    return get_suite("matrix").generate("xor", "ab", root, **kwargs)


def dataset_root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "matrix" / "xor" / "ab"


def flip_payload_bit(path: Path) -> None:
    """Flip the lowest bit of the first value: still finite, same shape and dtype."""
    data = bytearray(path.read_bytes())
    data[len(data) - np.load(path).nbytes] ^= 0x01
    path.write_bytes(bytes(data))


def edit_meta(root: Path, change: Callable[[dict], None]) -> None:
    meta = json.loads((root / "meta.json").read_text())
    change(meta)
    (root / "meta.json").write_text(json.dumps(meta))


def open_error(root: Path) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        Dataset.open(root)
    return info.value


def assert_no_result(tmp_path: Path) -> None:
    assert not list((tmp_path / "results").rglob("result.json"))


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# ---------------------------------------------------------------- training checks what verify checks


def test_training_refuses_a_flipped_byte_that_verify_rejects(capsys, tmp_path: Path) -> None:
    root = dataset_root(tmp_path)
    generate(root)
    flip_payload_bit(root / "obs.npy")
    code, _, err = run_cli(capsys, "data", "verify", str(root))
    assert code == 1 and "obs.npy: field 'obs': expected sha256" in err
    code, _, err = run_cli(capsys, *RUN)
    assert code == 1 and "obs.npy: field 'obs': expected sha256" in err
    assert_no_result(tmp_path)


def test_training_refuses_a_dtype_changed_in_meta_json(capsys, tmp_path: Path) -> None:
    root = dataset_root(tmp_path)
    generate(root)
    edit_meta(root, lambda meta: meta["files"]["obs"].update(dtype="float64"))
    code, _, err = run_cli(capsys, *RUN)
    assert code == 1
    assert "obs.npy: field 'obs': expected dtype float64 shape" in err and "found dtype float32" in err
    assert_no_result(tmp_path)
    code, _, err = run_cli(capsys, "data", "verify", str(root))
    assert code == 1 and "expected dtype float64" in err


def drop(key: str) -> Callable[[dict], None]:
    return lambda meta: meta.pop(key)


META_FAULTS = {
    "n_agents-string": (
        lambda m: m["spec"].update(n_agents="2"),
        "spec.n_agents",
        "positive integer",
        '"2" (a string)',
    ),
    "n_agents-float": (lambda m: m["spec"].update(n_agents=2.5), "spec.n_agents", "positive integer", "2.5 (a number)"),
    "n_agents-bool": (
        lambda m: m["spec"].update(n_agents=True),
        "spec.n_agents",
        "positive integer",
        "true (a boolean)",
    ),
    "n_actions-null": (lambda m: m["spec"].update(n_actions=None), "spec.n_actions", "positive integer", "null"),
    "no-statistics": (drop("statistics"), "statistics", "a JSON object", "no such key"),
    "no-source": (drop("source"), "source", "a JSON object", "no such key"),
    "no-files": (drop("files"), "files", "a JSON object", "no such key"),
    "suite-number": (lambda m: m.update(suite=3), "suite", "a non-empty string", "3 (an integer)"),
    "env_options-list": (lambda m: m.update(env_options=[]), "env_options", "a JSON object", "[] (a list)"),
    "files-list": (
        lambda m: m.update(files=list(m["files"].values())),
        "files",
        "a JSON object",
        "(a list)",
    ),
    "file-without-sha256": (
        lambda m: m["files"]["obs"].pop("sha256"),
        "files.obs.sha256",
        "64 lowercase hex",
        "no such key",
    ),
    "sha256-number": (lambda m: m["files"]["obs"].update(sha256=7), "files.obs.sha256", "64 lowercase hex", "7"),
    "file-outside": (
        lambda m: m["files"]["obs"].update(file="/etc/hostname"),
        "files.obs.file",
        '"obs.npy" (the file training reads, inside the dataset)',
        '"/etc/hostname" (a string)',
    ),
    "file-other-name": (
        lambda m: m["files"]["obs"].update(file="state.npy"),
        "files.obs.file",
        '"obs.npy"',
        "state.npy",
    ),
    "file-missing-record": (lambda m: m["files"].pop("avail"), "files.avail", "a JSON object", "no such key"),
    "file-extra-record": (lambda m: m["files"].update(extra=m["files"]["obs"]), "files.extra", "fields", "a record"),
    "statistics-count-type": (
        lambda m: m["statistics"].update(episodes="1000"),
        "statistics.episodes",
        "a non-negative integer",
        '"1000" (a string)',
    ),
    "statistics-nan": (
        lambda m: m["statistics"].update(return_mean=float("nan")),
        "statistics.return_mean",
        "finite",
        "NaN",
    ),
    "statistics-wrong": (
        lambda m: m["statistics"].update(transitions=m["statistics"]["transitions"] + 1),
        "statistics.transitions",
        "(computed from the data)",
        "",
    ),
    "statistics-wrong-return": (
        lambda m: m["statistics"].update(return_mean=m["statistics"]["return_mean"] + 0.5),
        "statistics.return_mean",
        "(computed from the data)",
        "",
    ),
}


@pytest.mark.parametrize("fault", sorted(META_FAULTS))
def test_meta_json_faults_are_errors_naming_file_field_expected_and_found(capsys, tmp_path: Path, fault: str) -> None:
    change, field, expected, found = META_FAULTS[fault]
    root = dataset_root(tmp_path)
    generate(root)
    edit_meta(root, change)
    error = open_error(root)
    assert (error.path, error.field) == (root / "meta.json", field)
    assert expected in str(error.expected) and found in str(error.found)
    assert str(error).startswith(f"{root / 'meta.json'}: field '{field}': expected ")
    code, _, err = run_cli(capsys, "data", "verify", str(root))
    assert code == 1 and f"field '{field}'" in err and "Traceback" not in err


def test_extra_statistics_are_accepted(tmp_path: Path) -> None:
    root = dataset_root(tmp_path)
    generate(root)
    edit_meta(root, lambda meta: meta["statistics"].update(reference_returns={"random": 0.5}, payoff_range=[0, 1]))
    Dataset.open(root).verify()


def test_verify_hashes_the_file_training_reads_not_one_meta_json_points_to(capsys, tmp_path: Path) -> None:
    root = dataset_root(tmp_path)
    generate(root)
    outside = tmp_path / "outside.npy"
    outside.write_bytes((root / "obs.npy").read_bytes())  # matches the recorded sha256
    flip_payload_bit(root / "obs.npy")  # what training would read
    edit_meta(root, lambda meta: meta["files"]["obs"].update(file=str(outside)))
    code, _, err = run_cli(capsys, "data", "verify", str(root))
    assert code == 1 and "field 'files.obs.file': expected \"obs.npy\"" in err and str(outside) in err
    edit_meta(root, lambda meta: meta["files"]["obs"].update(file="obs.npy"))
    code, _, err = run_cli(capsys, "data", "verify", str(root))
    assert code == 1 and "obs.npy: field 'obs': expected sha256" in err


def test_missing_meta_json_says_what_the_directory_holds(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "obs.npy").write_bytes(b"x")
    error = open_error(root)
    assert error.field == "meta.json" and error.found == "no meta.json; the directory holds 1 entries (obs.npy)"
    assert open_error(tmp_path / "nothing").found == f"no such directory {tmp_path / 'nothing'}"


# ---------------------------------------------------------------- the checksum cache


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the files hashed and the content scans run by Dataset.open / verify."""
    counts = {"hashed": 0, "content": 0}
    real_hash, real_content = store.sha256_file, store._check_content

    def hashing(path: Path) -> str:
        counts["hashed"] += 1
        return real_hash(path)

    def content(*args: Any) -> None:
        counts["content"] += 1
        real_content(*args)

    monkeypatch.setattr(store, "sha256_file", hashing)
    monkeypatch.setattr(store, "_check_content", content)
    return counts


def settled_dataset(root: Path) -> Dataset:
    """A dataset whose files are older than the file system's clock tick of the next open."""
    dataset = generate(root)
    time.sleep(0.1)
    return dataset


def test_a_cached_open_reads_no_file_and_a_fresh_open_hashes_every_file(tmp_path: Path, counted) -> None:
    root = dataset_root(tmp_path)
    files = len(settled_dataset(root).meta["files"])
    counted.update(hashed=0, content=0)
    Dataset.open(root)  # the files that were too new to cache when written are hashed now
    Dataset.open(root)
    assert counted["content"] == 0
    counted["hashed"] = 0
    Dataset.open(root)
    assert counted == {"hashed": 0, "content": 0}
    (root / CACHE_FILE).unlink()
    Dataset.open(root)
    assert counted == {"hashed": files, "content": 1}
    Dataset.open(root).verify()  # verify re-reads everything whatever the cache holds
    assert counted == {"hashed": 2 * files, "content": 2}


def test_a_file_changed_in_place_is_hashed_again_even_with_its_mtime_restored(tmp_path: Path) -> None:
    root = dataset_root(tmp_path)
    settled_dataset(root)
    Dataset.open(root)
    before = os.stat(root / "obs.npy")
    flip_payload_bit(root / "obs.npy")
    os.utime(root / "obs.npy", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(root / "obs.npy").st_size == before.st_size
    error = open_error(root)
    assert error.field == "obs" and "sha256" in str(error.expected)


def test_a_changed_meta_json_reruns_the_content_checks(tmp_path: Path, counted) -> None:
    root = dataset_root(tmp_path)
    settled_dataset(root)
    Dataset.open(root)
    edit_meta(root, lambda meta: meta["source"].update(note="edited"))
    counted.update(hashed=0, content=0)
    Dataset.open(root)
    assert counted == {"hashed": 0, "content": 1}


def test_a_file_changed_during_an_open_is_not_cached_with_its_old_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = dataset_root(tmp_path)
    settled_dataset(root)
    Dataset.open(root)
    edit_meta(root, lambda meta: meta["source"].update(note="edited"))  # the content checks run again
    real_content = store._check_content

    def content_then_change(*args: Any) -> None:
        real_content(*args)
        flip_payload_bit(root / "obs.npy")  # after its cached sha256 was looked up
        time.sleep(0.1)  # and a clock tick before the cache is written

    with monkeypatch.context() as patch:
        patch.setattr(store, "_check_content", content_then_change)
        Dataset.open(root)
    assert open_error(root).field == "obs"


@pytest.mark.parametrize(
    "text", ["{not json", '{"version": 99, "files": {}}', '{"version": 1, "files": {"obs": 3}}', "[]"]
)
def test_a_corrupt_cache_is_ignored_and_replaced(tmp_path: Path, text: str) -> None:
    root = dataset_root(tmp_path)
    settled_dataset(root)
    (root / CACHE_FILE).write_text(text)
    Dataset.open(root)
    assert json.loads((root / CACHE_FILE).read_text())["version"] == store.CACHE_VERSION


def test_an_unwritable_dataset_directory_is_hashed_on_every_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted
) -> None:
    root = dataset_root(tmp_path)
    files = len(settled_dataset(root).meta["files"])
    (root / CACHE_FILE).unlink()
    before = listing(root)

    def refuse(path: Path) -> Path:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path.parent))

    monkeypatch.setattr(store, "atomic_temp_file", refuse)
    counted.update(hashed=0, content=0)
    Dataset.open(root)
    Dataset.open(root)
    assert counted == {"hashed": 2 * files, "content": 2}
    assert listing(root) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_dataset_directory_opens_without_a_cache(tmp_path: Path) -> None:
    root = dataset_root(tmp_path)
    settled_dataset(root)
    (root / CACHE_FILE).unlink()
    root.chmod(0o555)
    try:
        Dataset.open(root)
        flip_payload_bit(root / "obs.npy")
        assert open_error(root).field == "obs"
        assert CACHE_FILE not in listing(root)
    finally:
        root.chmod(0o755)


def test_a_full_disk_while_caching_does_not_fail_the_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = dataset_root(tmp_path)
    settled_dataset(root)
    (root / CACHE_FILE).unlink()
    before = listing(root)
    fail_writes(monkeypatch, lambda call: True)
    Dataset.open(root)
    assert listing(root) == before


# ---------------------------------------------------------------- advice that works


def test_a_leftover_directory_is_named_for_what_it_holds_and_both_fixes_work(tmp_path: Path) -> None:
    root = tmp_path / "my data" / "ds"
    root.mkdir(parents=True)
    (root / "obs.npy").write_bytes(b"partial")
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DatasetExistsError) as info:
        generate(root)
    error = info.value
    assert isinstance(error, FileExistsError) and error.path == root
    assert error.found.startswith("a directory without meta.json holding 2 entries (notes.txt, obs.npy)")
    assert listing(root) == ["notes.txt", "obs.npy"]
    command = re.search(r"remove it with: (rm -r .+), or pass", str(error)).group(1)
    subprocess.run(shlex.split(command), check=True)
    generate(root).verify()

    (root / "meta.json").unlink()
    with pytest.raises(DatasetExistsError, match="overwrite=True"):
        generate(root)
    generate(root, overwrite=True).verify()


def test_an_existing_dataset_needs_overwrite_and_an_empty_directory_does_not(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    generate(root)
    with pytest.raises(DatasetExistsError) as info:
        generate(root)
    assert info.value.found == "a dataset (matrix/xor/ab)" and "overwrite=True" in str(info.value)
    generate(root, overwrite=True)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(DatasetExistsError) as info:
        generate(target)
    subprocess.run(shlex.split(re.search(r"remove it with: (rm .+), or pass", str(info.value)).group(1)), check=True)
    generate(target)


def test_run_and_generate_on_a_leftover_directory_give_advice_that_works(capsys, tmp_path: Path) -> None:
    root = dataset_root(tmp_path)
    root.mkdir(parents=True)
    (root / "obs.npy").write_bytes(b"partial")
    code, _, err = run_cli(capsys, *RUN, "--steps", "2")
    assert code == 1 and "without meta.json" in err and "Traceback" not in err
    subprocess.run(shlex.split(re.search(r"remove it with: (rm -r \S+), or pass", err).group(1)), check=True)
    code, out, _ = run_cli(capsys, *RUN, "--steps", "2")
    assert code == 0 and "final return" in out

    (root / "meta.json").unlink()
    generate_args = ["data", "generate", "--suite", "matrix", "--task", "xor", "--quality", "ab"]
    code, _, err = run_cli(capsys, *generate_args)
    assert code == 1 and "without meta.json" in err and "--overwrite" in err
    code, _, _ = run_cli(capsys, *generate_args, "--overwrite")
    assert code == 0
    Dataset.open(root).verify()


# ---------------------------------------------------------------- full disks and read-only roots


def fail_writes(monkeypatch: pytest.MonkeyPatch, fails: Callable[[int], bool]) -> list[bytes]:
    """``os.write`` raises ENOSPC on the calls (numbered from 1) for which ``fails`` is true;
    returns the first bytes of every call."""
    real_write = os.write
    calls: list[bytes] = []

    def write(fd: int, data: Any) -> int:
        calls.append(bytes(data[:32]))
        if fails(len(calls)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    return calls


def writes_of_one_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """The number of ``os.write`` calls of the npy files, and the call that writes meta.json."""
    with monkeypatch.context() as patch:
        calls = fail_writes(patch, lambda call: False)
        generate(tmp_path / "probe")
    meta_call = 1 + next(i for i, head in enumerate(calls) if head.startswith(b'{\n  "format_version"'))
    assert calls[0].startswith(b"\x93NUMPY")  # the first npy header
    return meta_call - 1, meta_call


@pytest.mark.parametrize("where", ["first", "middle", "meta.json"])
def test_a_full_disk_names_the_directory_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    npy_calls, meta_call = writes_of_one_dataset(tmp_path, monkeypatch)
    failing = {"first": 1, "middle": npy_calls // 2, "meta.json": meta_call}[where]
    parent = tmp_path / "fresh"
    parent.mkdir()
    root = parent / "new" / "ds"
    fail_writes(monkeypatch, lambda call: call == failing)
    with pytest.raises(DatasetWriteError) as info:
        generate(root)
    error = info.value
    assert error.path.parent == root
    assert (error.field == "meta.json") == (where == "meta.json")
    assert str(error.expected).startswith(f"free space in {root.parent} for the dataset (")
    assert "No space left on device (ENOSPC)" in str(error.found)
    assert f"nothing was written; {root} is unchanged" in str(error)
    assert listing(parent) == []  # no staging folder, and the parent this write created is gone


def test_a_full_disk_in_generate_is_an_error_message_not_a_traceback(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_writes(monkeypatch, lambda call: call == 1)
    code, _, err = run_cli(capsys, "data", "generate", "--suite", "matrix", "--task", "xor", "--quality", "ab")
    assert code == 1 and "ENOSPC" in err and str(dataset_root(tmp_path)) in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_an_unwritable_root_names_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def refuse(**kwargs: Any) -> str:
        raise OSError(code, os.strerror(code), os.path.join(kwargs["dir"], kwargs["prefix"] + "x"))

    monkeypatch.setattr(store.tempfile, "mkdtemp", refuse)
    root = tmp_path / "ro" / "ds"
    with pytest.raises(DatasetWriteError) as info:
        generate(root)
    error = info.value
    assert (error.path, error.field) == (root, "dataset")
    assert error.expected == f"write permission in {root.parent} (the dataset is staged there and renamed into place)"
    assert errno.errorcode[code] in str(error.found)
    assert listing(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_root_names_the_directory_and_leaves_nothing_behind(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(DatasetWriteError) as info:
            generate(parent / "ds")
        assert str(parent) in str(info.value.expected) and "EACCES" in str(info.value.found)
        assert listing(parent) == []
    finally:
        parent.chmod(0o755)


def test_written_files_are_what_np_save_writes(tmp_path: Path) -> None:
    dataset = generate(tmp_path / "ds")
    for name, array in dataset.fields.items():
        copy = tmp_path / f"{name}.npy"
        np.save(copy, np.asarray(array))
        assert copy.read_bytes() == (dataset.root / f"{name}.npy").read_bytes(), name


def test_write_dataset_refuses_before_writing_when_the_target_holds_a_dataset(tmp_path: Path) -> None:
    dataset = generate(tmp_path / "ds")
    fields = {name: np.asarray(array) for name, array in dataset.fields.items()}
    with pytest.raises(DatasetExistsError):
        write_dataset(tmp_path / "ds", fields, spec=dataset.spec, suite="s", task="t", quality="q", source={})
    assert listing(tmp_path) == ["ds"]

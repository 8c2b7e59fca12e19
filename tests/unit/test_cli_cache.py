"""The persisted cache of ``dsfleet validate`` and ``diff``: what it refuses, and that it never changes a result."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dsfleet.reconciler.cli import caches
from dsfleet.reconciler.cli.caches import (
    cache_key,
    cached_desired_state,
    disabled,
    read_cache,
    write_cache,
)
from dsfleet.reconciler.cli.main import main
from dsfleet.reconciler.compiling.desired import CompileCache, DesiredState, desired_state
from dsfleet.reconciler.loading.manifestsets import ManifestCache
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from dsfleet.reconciler.views import finding_json

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"
PAST_NS = 1_600_000_000 * 10**9
"""An mtime long past: a file's stat vouches for its content only once it is older than the racy window."""


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, out)
    _age(out)
    return out


def _age(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(PAST_NS, PAST_NS))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _result(d: DesiredState) -> tuple[Any, ...]:
    configs = None if d.configs is None else {n: c.model_dump(mode="json") for n, c in d.configs.items()}
    return [finding_json(f) for f in d.loaded.findings], configs, d.loaded.digest, d.loaded.files


def _cached(fleet: Path, directory: Path) -> DesiredState:
    return cached_desired_state([str(fleet)], DEFAULT_LIMITS, directory=directory)


def _saved(fleet: Path, directory: Path) -> Path:
    _cached(fleet, directory)
    [path] = directory.glob("*.pickle")
    return path


def test_a_second_run_starts_from_the_file_and_gives_the_same_result(fleet: Path, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    first = _cached(fleet, directory)
    loaded, why = read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS))
    assert why == "hit" and loaded is not None
    assert loaded.compiled.last is not None
    # Identity survives: the last fleet's documents are the parsed files' documents.
    parsed = {id(m) for pf in loaded.manifests._entries.values() for _, m in pf.manifests}
    assert all(id(doc) in parsed for doc in loaded.compiled.last.cameras.values())
    # Memos kept by object id are keyed by the loaded objects' ids.
    assert loaded.compiled.fingerprints
    assert all(key == id(value[0]) for key, value in loaded.compiled.fingerprints.items())
    assert _result(_cached(fleet, directory)) == _result(first) == _result(desired_state([str(fleet)]))


def test_files_and_directory_are_private(fleet: Path, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    path = _saved(fleet, directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_edits_are_seen_and_results_equal_a_cold_run(fleet: Path, tmp_path: Path) -> None:
    """Each step: a run through the file left by the previous one equals a run without any cache."""
    directory = tmp_path / "cache"
    cameras = fleet / "cameras" / "gate.yaml"
    steps: list[Callable[[], object]] = [
        lambda: None,
        lambda: _edit(cameras, "gate-1/main", "gate-1/other"),  # one camera's stream
        lambda: _edit(cameras, "encoding: h265", "encoding: h999"),  # an error finding
        lambda: _edit(cameras, "encoding: h999", "encoding: h265"),  # fixed again
        (fleet / "instances" / "traffic.yaml").unlink,  # a file removed
        lambda: shutil.copy(EXAMPLE / "instances" / "traffic.yaml", fleet / "instances" / "again.yaml"),
        lambda: _edit(fleet / "profiles" / "traffic.yaml", "topk: 20", "topk: 21"),  # a profile
    ]
    for n, step in enumerate(steps):
        step()
        cached = _cached(fleet, directory)
        assert _result(cached) == _result(desired_state([str(fleet)])), f"step {n}"
        if n == 2:
            assert cached.configs is None
            assert any(f.severity.value == "error" for f in cached.loaded.findings)


def test_an_edit_that_keeps_size_and_mtime_is_seen_when_the_file_was_fresh(
    fleet: Path, tmp_path: Path
) -> None:
    """A file written just before the cache was saved is not vouched for by its stat (the clock's tick may hide
    a second write): the next run reads it again, even when the edit keeps its size and mtime."""
    directory = tmp_path / "cache"
    cameras = fleet / "cameras" / "gate.yaml"
    _edit(cameras, "gate-1/main", "gate-1/mai1")
    _cached(fleet, directory)
    before = cameras.stat()
    _edit(cameras, "gate-1/mai1", "gate-1/mai2")
    os.utime(cameras, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (cameras.stat().st_size, cameras.stat().st_ino) == (before.st_size, before.st_ino)
    result = _cached(fleet, directory)
    assert result.fleet.cameras["gate-1"].spec.url.endswith("/gate-1/mai2")
    assert _result(result) == _result(desired_state([str(fleet)]))


def test_a_run_that_changed_little_does_not_write_the_file_again(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing changed, or a few documents: the file stays as it was and the next run starts from it again (and
    redoes that little work); more than ``SMALL_CHANGE`` documents or instances: it is written again."""
    directory = tmp_path / "cache"
    _saved(fleet, directory)
    path = _saved(fleet, directory)  # the second run settles what was fresh in the first
    before = path.stat()
    _cached(fleet, directory)
    cameras = fleet / "cameras" / "gate.yaml"
    _edit(cameras, "gate-1/main", "gate-1/other")
    assert _result(_cached(fleet, directory)) == _result(desired_state([str(fleet)]))
    _edit(cameras, "gate-2/main", "gate-2/other")  # the file still holds the fleet before both edits
    assert _result(_cached(fleet, directory)) == _result(desired_state([str(fleet)]))
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    monkeypatch.setattr(caches, "SMALL_CHANGE", 1)
    _cached(fleet, directory)
    assert path.stat().st_ino != before.st_ino  # written again (a new file renamed over the old one)
    loaded, _ = read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS))
    assert loaded is not None and loaded.compiled.last is not None
    assert loaded.compiled.last.cameras["gate-2"].spec.url.endswith("/gate-2/other")


def test_another_key_is_ignored(fleet: Path, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    path = _saved(fleet, directory)
    key = cache_key([str(fleet)], DEFAULT_LIMITS)
    assert read_cache(directory, cache_key([str(fleet)], Limits(max_depth=3)))[1] == "none"
    # A file under this key's name that was written for another key.
    other = "f" * 64
    text = path.read_bytes().replace(key.encode(), other.encode(), 1)
    path.write_bytes(text)
    assert read_cache(directory, key) == (None, "other key")


@pytest.mark.parametrize(
    "change",
    [
        {"code": "other code"},
        {"limits": Limits(max_file_bytes=1024)},
        {"limits": Limits(exclude=("cameras/",))},
        {"paths": ["elsewhere"]},
    ],
    ids=["code", "limits", "exclude", "paths"],
)
def test_the_key_covers_code_limits_and_paths(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {"paths": ["fleet"], "limits": DEFAULT_LIMITS, "code": "this code"}
    assert cache_key(**base) != cache_key(**{**base, **change})
    assert cache_key(**base) == cache_key(**dict(base))


def test_another_code_digest_ignores_the_file(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cache"
    _saved(fleet, directory)
    monkeypatch.setattr(caches, "code_digest", lambda: "a different build")
    assert read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS))[1] == "none"
    assert _result(_cached(fleet, directory)) == _result(desired_state([str(fleet)]))
    assert len(list(directory.glob("*.pickle"))) == 2


def test_only_the_newest_files_are_kept(fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "cache"
    monkeypatch.setattr(caches, "MAX_FILES", 2)
    for n in range(4):
        monkeypatch.setattr(caches, "code_digest", lambda n=n: f"build {n}")
        _cached(fleet, directory)
    kept = {p.name for p in directory.glob("*.pickle")}
    assert kept == {cache_key([str(fleet)], DEFAULT_LIMITS, f"build {n}")[:32] + ".pickle" for n in (2, 3)}


def test_the_code_digest_covers_the_package() -> None:
    digest = caches.code_digest()
    assert len(digest) == 64 and digest == caches.code_digest()


def _rewrite_payload(path: Path, payload: bytes) -> None:
    """Replace the payload with a consistent header (length and checksum): only the unpickling can refuse it."""
    fmt, key, _, _ = path.read_bytes().split(b"\n", 3)
    digest = caches._payload_digest(payload).encode()
    path.write_bytes(b"%s\n%s\n%d %s\n" % (fmt, key, len(payload), digest) + payload)


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.remove, ("never-removed",))


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "other types", "other format"])
def test_a_broken_file_is_ignored(fleet: Path, tmp_path: Path, damage: str) -> None:
    directory = tmp_path / "cache"
    path = _saved(fleet, directory)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    elif damage == "garbage":
        _rewrite_payload(path, b"\x80\x05not a pickle at all")
    elif damage == "other types":
        _rewrite_payload(path, pickle.dumps(({}, CompileCache(), None)))
    else:
        path.write_bytes(b"dsfleet-cli-cache 0\n" + data.split(b"\n", 1)[1])
    expected = {
        "truncated": "truncated",
        "flipped": "checksum mismatch",
        "garbage": "broken: UnpicklingError",
        "other types": "unexpected content",
        "other format": "other format",
    }[damage]
    assert read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS)) == (None, expected)
    assert _result(_cached(fleet, directory)) == _result(desired_state([str(fleet)]))
    assert read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS))[1] == "hit"  # written anew


@pytest.mark.parametrize("where", ["file", "directory"])
def test_a_file_others_may_write_is_never_unpickled(fleet: Path, tmp_path: Path, where: str) -> None:
    directory = tmp_path / "cache"
    path = _saved(fleet, directory)
    victim = tmp_path / "never-removed"
    victim.write_text("still here")
    _rewrite_payload(path, pickle.dumps(_Boom()))
    if where == "file":
        path.chmod(0o622)
    else:
        directory.chmod(0o777)
    loaded, why = read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS))
    assert loaded is None and why == f"{where} writable by group or others"
    assert victim.read_text() == "still here"


def test_a_file_of_another_user_is_never_unpickled(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cache"
    _saved(fleet, directory)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(directory).st_uid + 1)
    assert read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS)) == (
        None,
        "directory not owned by this user",
    )


def test_a_symlinked_file_is_not_followed(fleet: Path, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    path = _saved(fleet, directory)
    target = tmp_path / "elsewhere.pickle"
    path.rename(target)
    path.symlink_to(target)
    loaded, why = read_cache(directory, cache_key([str(fleet)], DEFAULT_LIMITS))
    assert loaded is None and why.startswith("unreadable")


def test_a_cache_above_the_cap_is_not_written(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caches, "MAX_BYTES", 1000)
    directory = tmp_path / "cache"
    d = _cached(fleet, directory)
    assert not list(directory.glob("*.pickle"))
    assert _result(d) == _result(desired_state([str(fleet)]))
    monkeypatch.setattr(caches, "MAX_BYTES", 10)
    assert write_cache(directory, "k" * 64, ManifestCache(), CompileCache(), "").startswith("too large")


def test_an_unwritable_directory_is_a_slower_run_not_an_error(fleet: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the directory would be")
    d = _cached(fleet, blocker / "dsfleet")
    assert _result(d) == _result(desired_state([str(fleet)]))


@pytest.mark.parametrize(
    ("flag", "env", "off"),
    [(False, "", False), (True, "", True), (False, "1", True), (False, "0", False), (False, "yes", True)],
)
def test_the_cache_is_turned_off_by_flag_or_environment(flag: bool, env: str, off: bool) -> None:
    assert disabled(flag, {"DSFLEET_NO_CACHE": env}) is off


def test_the_location_follows_xdg() -> None:
    assert caches.cache_dir({"XDG_CACHE_HOME": "/var/cache/me"}) == Path("/var/cache/me/dsfleet")
    assert caches.cache_dir({"XDG_CACHE_HOME": "relative"}) == Path.home() / ".cache" / "dsfleet"
    assert caches.cache_dir({}) == Path.home() / ".cache" / "dsfleet"


def _validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_second_validate_reports_what_the_first_did(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("DSFLEET_NO_CACHE", raising=False)
    first = _validate(["fleet"], capsys)
    assert list((tmp_path / "xdg" / "dsfleet").glob("*.pickle"))
    assert _validate(["fleet"], capsys) == first == _validate(["fleet", "--no-cache"], capsys)
    assert first[0] == 0
    _edit(fleet / "instances" / "ccm.yaml", "profile: ccm-faceid", "profile: no-such-profile")
    broken = _validate(["fleet"], capsys)
    assert broken[0] == 1 and "no-such-profile" in broken[2]
    assert _validate(["fleet"], capsys) == broken == _validate(["fleet", "--no-cache"], capsys)
    _edit(fleet / "instances" / "ccm.yaml", "profile: no-such-profile", "profile: ccm-faceid")
    assert _validate(["fleet"], capsys) == first


def test_no_cache_writes_nothing(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _validate(["fleet", "--no-cache"], capsys)[0] == 0
    monkeypatch.setenv("DSFLEET_NO_CACHE", "1")
    assert _validate(["fleet"], capsys)[0] == 0
    assert main(["diff", "fleet"]) == 1  # against a store that does not exist yet: everything is new
    assert not (tmp_path / "xdg").exists()

"""Loading manifest directories: discovery rules, hostile files, and the promise that every finding is located."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsfleet.reconciler.loading.manifestsets import ManifestCache, load_manifests
from dsfleet.reconciler.loading.yamlfiles import Limits
from tests.support.yamlgen import block_yaml

CAMERA = """apiVersion: dsfleet/v1
kind: Camera
metadata:
  name: {name}
spec:
  cameraId: "{cid}"
  url: rtsp://127.0.0.1:8554/{name}
"""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def rules(loaded: Any) -> list[tuple[str, str]]:
    return [(Path(f.location.file).name if f.location else "", f.rule) for f in loaded.findings]


def test_nesting_suffixes_multi_documents_and_dot_directories(tmp_path: Path) -> None:
    write(
        tmp_path / "a" / "b" / "c" / "cams.yml",
        CAMERA.format(name="c1", cid=1) + "---\n" + CAMERA.format(name="c2", cid=2),
    )
    write(
        tmp_path / "top.yaml", "---\n---\n" + CAMERA.format(name="c3", cid=3)
    )  # empty documents are ignored
    write(tmp_path / ".git" / "x.yaml", "not: [valid")
    write(tmp_path / ".hidden.yaml", "not: [valid")
    write(tmp_path / "notes.txt", "not yaml at all: [")
    loaded = load_manifests([tmp_path])
    assert loaded.ok, rules(loaded)
    assert sorted(loaded.fleet.cameras) == ["c1", "c2", "c3"]
    assert len(loaded.files) == 2


def test_symlinks_inside_are_followed_and_outside_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "manifests", tmp_path / "elsewhere"
    write(root / "real" / "cam.yaml", CAMERA.format(name="inside", cid=1))
    write(outside / "cam.yaml", CAMERA.format(name="outside", cid=2))
    os.symlink(root / "real" / "cam.yaml", root / "alias.yaml")  # same file twice: read once
    os.symlink(outside / "cam.yaml", root / "escape.yaml")
    os.symlink(outside, root / "escape-dir")
    loaded = load_manifests([root])
    assert sorted(loaded.fleet.cameras) == ["inside"]
    assert sorted(rules(loaded)) == [("escape-dir", "manifest-symlink"), ("escape.yaml", "manifest-symlink")]


def test_hostile_files_are_refused_with_a_location_and_the_rest_still_loads(tmp_path: Path) -> None:
    write(tmp_path / "ok.yaml", CAMERA.format(name="ok", cid=1))
    write(tmp_path / "binary.yaml", b"apiVersion: dsfleet/v1\n\x00\x01\x02")
    write(tmp_path / "latin1.yaml", "metadata: {name: caf\u00e9}\n".encode("latin-1"))
    write(tmp_path / "big.yaml", "a: " + "x" * 5000 + "\n")
    lol = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
        f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)
    ]
    write(tmp_path / "bomb.yaml", "\n".join(lol) + "\n")
    write(tmp_path / "deep.yaml", "x: " + "[" * 100 + "]" * 100 + "\n")
    loaded = load_manifests([tmp_path], limits=Limits(max_file_bytes=4096))
    assert sorted(loaded.fleet.cameras) == ["ok"]
    assert "larger than the 4 KiB limit" in next(
        f.message for f in loaded.findings if "big.yaml" in str(f.location)
    )
    found = dict(rules(loaded))
    assert found == {
        "deep.yaml": "yaml-limits",
        "big.yaml": "yaml-limits",
        "binary.yaml": "yaml-encoding",
        "bomb.yaml": "yaml-limits",
        "latin1.yaml": "yaml-encoding",
    }
    for f in loaded.findings:
        assert f.location is not None
        whole_file = f.location.file.endswith("big.yaml")  # the size limit is about the whole file
        assert whole_file or f.location.line >= 1, f


@pytest.mark.parametrize("kind", ["{}", "[Camera]", "7", "null"])
def test_a_kind_that_is_not_a_name_is_a_finding_not_a_crash(tmp_path: Path, kind: str) -> None:
    write(tmp_path / "ok.yaml", CAMERA.format(name="ok", cid=1))
    write(tmp_path / "odd.yaml", f"apiVersion: dsfleet/v1\nkind: {kind}\nmetadata: {{name: x}}\nspec: {{}}\n")
    loaded = load_manifests([tmp_path])
    assert sorted(loaded.fleet.cameras) == ["ok"]
    odd = [f for f in loaded.findings if f.location is not None and f.location.file.endswith("odd.yaml")]
    assert odd and all(f.severity == "error" and f.location.line >= 1 for f in odd), odd


def test_the_parse_cache_rereads_only_changed_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", CAMERA.format(name="a", cid=1))
    write(tmp_path / "b.yaml", CAMERA.format(name="b", cid=2))
    cache = ManifestCache()
    first = load_manifests([tmp_path], cache=cache)
    second = load_manifests([tmp_path], cache=cache)
    assert second.fleet.cameras["a"] is first.fleet.cameras["a"]  # not even re-read
    a.write_text(CAMERA.format(name="a", cid=9))
    third = load_manifests([tmp_path], cache=cache)
    assert third.fleet.cameras["a"].spec.cameraId == "9"
    assert third.fleet.cameras["b"] is first.fleet.cameras["b"]
    assert third.digest != first.digest == second.digest


WORDS = ["apiVersion", "kind", "metadata", "name", "spec", "labels", "cameraId", "url", "gpus", "capacity",
         "layout", "cameras", "profile", "gies", "properties", "batch-size", "node", "app", "streammux", "rules"]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(
        ["dsfleet/v1", "Camera", "Node", "DsInstance", "InferenceProfile", "Policy", "ccm", "auto", "x"]
    ),
    st.integers(-5, 5000),
    st.booleans(),
    st.none(),
    st.text(alphabet="abc-:/@ #'\"", max_size=12),
)
TREES = st.recursive(
    VALUES,
    lambda kids: st.dictionaries(st.sampled_from(WORDS), kids, max_size=5) | st.lists(kids, max_size=3),
    max_leaves=15,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(docs=st.lists(TREES, min_size=1, max_size=3))
def test_any_manifest_text_loads_or_every_finding_has_a_location(tmp_path: Path, docs: list[Any]) -> None:
    text = "---\n".join(block_yaml(d) for d in docs)
    path = write(tmp_path / "gen" / "m.yaml", text)
    loaded = load_manifests([path.parent])  # never raises
    for finding in loaded.findings:
        assert finding.location is not None and finding.location.file.endswith("m.yaml"), finding
        if finding.rule not in ("yaml-syntax", "yaml-limits"):
            assert finding.location.line >= 1 and finding.location.column >= 1, (text, finding)


@pytest.mark.parametrize("secret", ["hunter2", "p@ss:w0rd"])
def test_no_message_repeats_a_credential(tmp_path: Path, secret: str) -> None:
    write(
        tmp_path / "cam.yaml",
        CAMERA.format(name="c", cid=1).replace("rtsp://127.0.0.1", f"rtsp://admin:{secret}@127.0.0.1")
        + "  bogus: "
        + secret
        + "\n",
    )
    loaded = load_manifests([tmp_path])
    text = " ".join(f.message + " ".join(n.message for n in f.notes) for f in loaded.findings)
    assert "camera-url-credentials" in {f.rule for f in loaded.findings}
    assert secret not in text


def test_findings_on_unchanged_files_are_located_without_parsing_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locating re-parses a file with the round-trip loader; the coordinator's cache keeps what it found."""
    from dsfleet.reconciler.loading import manifestsets

    for i in range(3):  # a duplicate cameraId in each file: a finding per file that needs a location
        write(
            tmp_path / f"c{i}.yaml",
            CAMERA.format(name=f"a{i}", cid=i) + "---\n" + CAMERA.format(name=f"b{i}", cid=i),
        )
    built: list[str] = []

    class CountingLocator(manifestsets.Locator):
        def __init__(self, text: str) -> None:
            built.append(text)
            super().__init__(text)

    monkeypatch.setattr(manifestsets, "Locator", CountingLocator)
    cache = ManifestCache()
    first = load_manifests([tmp_path], cache=cache)
    assert len(built) == 3 and first.errors
    built.clear()
    again = load_manifests([tmp_path], cache=cache)
    assert built == [] and [f.location for f in again.findings] == [f.location for f in first.findings]
    write(tmp_path / "c1.yaml", "# edited\n" + (tmp_path / "c1.yaml").read_text())
    edited = load_manifests([tmp_path], cache=cache)
    assert len(built) == 1 and {
        f.location.line for f in edited.findings if f.location and "c1" in f.location.file
    } >= {next(f.location.line for f in first.findings if f.location and "c1" in f.location.file) + 1}

"""The pure parts of API edits: the placement rule, object versions and If-Match, the round trip of one
document, roles and the tokens file."""

from __future__ import annotations

import pytest

from dsfleet.reconciler.api.gates import Access, refusal
from dsfleet.reconciler.api.roles import (
    Identity,
    Role,
    TokensFileError,
    identify,
    parse_tokens,
    required_role,
    token_digest,
)
from dsfleet.reconciler.editing.documents import add_object, find_object, remove_object, replace_object
from dsfleet.reconciler.editing.placement import placement_path
from dsfleet.reconciler.editing.versions import etag_matches, object_version, quoted

FILE = """# header comment
apiVersion: dsfleet/v1
kind: Camera
metadata:
  name: a
spec:
  cameraId: "1"  # kept
  url: rtsp://h/a
---
apiVersion: dsfleet/v1
kind: Camera
metadata:
  name: b
spec:
  cameraId: "2"
  url: rtsp://h/b
"""


@pytest.mark.parametrize(
    ("kind", "data", "path"),
    [
        ("Camera", {"metadata": {"name": "c", "labels": {"zone": "gate"}}}, "cameras/gate.yaml"),
        ("Camera", {"metadata": {"name": "c"}}, "cameras/default.yaml"),
        ("Camera", {"metadata": {"name": "c", "labels": {"zone": "../etc"}}}, "cameras/default.yaml"),
        ("DsInstance", {"spec": {"node": "gpu-1"}}, "instances/gpu-1.yaml"),
        ("DsInstance", {"spec": {}}, "instances/unplaced.yaml"),
        ("Node", {"metadata": {"name": "n"}}, "nodes/nodes.yaml"),
        ("Policy", {"metadata": {"name": "p"}}, "policies/p.yaml"),
    ],
)
def test_placement_rule(kind: str, data: dict[str, object], path: str) -> None:
    assert placement_path(kind, data) == path


def test_versions_and_if_match() -> None:
    a = find_object(FILE, "Camera", "a")
    assert a is not None
    version = object_version(a.body)
    assert etag_matches(quoted(version), version) and etag_matches("*", version)
    assert not etag_matches(f"W/{quoted(version)}", version) and not etag_matches('"other"', version)
    changed = replace_object(FILE, "Camera", "b", {**_b(), "spec": {"cameraId": "2", "url": "rtsp://h/c"}})
    again = find_object(changed, "Camera", "a")
    assert again is not None and object_version(again.body) == version, (
        "a neighbour's change keeps a's version"
    )


def _b() -> dict[str, object]:
    return {"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": "b"}}


def test_replace_changes_only_the_objects_lines() -> None:
    data = {"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": "a"}}
    out = replace_object(FILE, "Camera", "a", {**data, "spec": {"cameraId": "1", "url": "rtsp://h/z"}})
    before, after = FILE.splitlines(), out.splitlines()
    assert [(x, y) for x, y in zip(before, after, strict=True) if x != y] == [
        ("  url: rtsp://h/a", "  url: rtsp://h/z")
    ]


def test_add_and_remove() -> None:
    data = {"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": "c"}, "spec": {"url": "x"}}
    added = add_object(FILE, data)
    assert added.startswith(FILE) and find_object(added, "Camera", "c") is not None
    assert add_object("", data).startswith("apiVersion: dsfleet/v1\n")
    removed = remove_object(FILE, "Camera", "a")
    assert removed.startswith("# header comment\n") and find_object(removed, "Camera", "a") is None
    assert remove_object(remove_object(FILE, "Camera", "a"), "Camera", "b").strip() == "# header comment" or (
        remove_object(remove_object(FILE, "Camera", "a"), "Camera", "b") == ""
    )


def test_roles_and_tokens() -> None:
    entries = parse_tokens(f"# c\nalice:operator:{token_digest('t1')}\nvic:viewer:{token_digest('t2')}\n")
    assert identify("Bearer t1", "admin-t", entries) == Identity("alice", Role.OPERATOR)
    assert identify("Bearer admin-t", "admin-t", entries) == Identity("admin", Role.ADMIN)
    assert identify("Bearer nope", "admin-t", entries) is None
    assert required_role("GET", "/api/v1/manifests/Policy/p") is Role.VIEWER
    assert required_role("PUT", "/api/v1/manifests/Camera/c") is Role.OPERATOR
    assert required_role("PUT", "/api/v1/manifests/Policy/p") is Role.ADMIN
    viewer = refusal(
        Access.WRITE, token=None, read_requires_token=False, authorization="Bearer t2", tokens=entries
    )
    assert viewer is not None and viewer[0] == 403
    operator = refusal(
        Access.WRITE, token=None, read_requires_token=False, authorization="Bearer t1", tokens=entries
    )
    assert operator is None
    policy = refusal(
        Access.WRITE,
        token=None,
        read_requires_token=False,
        authorization="Bearer t1",
        tokens=entries,
        needed=Role.ADMIN,
    )
    assert policy is not None and policy[0] == 403
    for bad in (
        "alice:root:" + "0" * 64,
        "alice:viewer:xyz",
        "a:b",
        f"a:viewer:{'0' * 64}\na:viewer:{'0' * 64}",
    ):
        with pytest.raises(TokensFileError):
            parse_tokens(bad)

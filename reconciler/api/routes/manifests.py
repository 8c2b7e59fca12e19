"""Edits of the manifests: ``GET/PUT/DELETE /manifests/{kind}/{name}``, ``POST /manifests/{kind}``, cameras
assigned to an instance (``POST /manifests/DsInstance/{name}/cameras``, ``DELETE …/cameras/{camera}``) or
moved to it from another in one commit (``POST …/cameras/move``), the pending changes (``GET /pending``) and
``POST /pending/discard``.

An edit becomes a change of a manifest file, never a second source of truth: the whole manifest set with the
edit applied is judged in memory by the loader, schemas and rules of ``dsfleet validate`` (an edit that adds an
error is refused with 422 and those findings, and nothing is written), then the one file is written (a round
trip of the object's own document: :mod:`dsfleet.reconciler.editing`) and, when the manifests directory is in a
git work tree, committed as the token's name (:mod:`dsfleet.reconciler.loading.gitwrite`), then pushed when
``[api] edits_push_remote`` says so. The change applies as any change of the directory does: Apply in manual
sync, at once in auto sync. Every object read carries its version (``ETag``); a write whose ``If-Match`` is
stale is refused with 412 and the current version. Every write is an event (who, what, which commit).

Credentials never come through here: a camera URL with a user or password is refused as ``validate`` refuses
it; the password goes to the host-side secret store of the node (``secrets/<secretRef>/``), named by
``spec.credentials.secretRef``."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Request, Response
from fastapi.responses import JSONResponse

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.dependencies import Context, caller, require_write
from dsfleet.reconciler.api.errors import ApiError, error_body, error_responses
from dsfleet.reconciler.api.roles import Identity
from dsfleet.reconciler.api.routes.editmodels import (
    CameraAssignment,
    CameraMove,
    Discarded,
    EditRefused,
    EditResult,
    FindingOut,
    Kind,
    ManifestBody,
    ManifestList,
    ManifestObject,
    Pending,
    PendingCommit,
    Stale,
)
from dsfleet.reconciler.editing.checks import check_files, new_errors
from dsfleet.reconciler.editing.documents import (
    EditError,
    add_object,
    find_object,
    remove_object,
    replace_object,
    split,
)
from dsfleet.reconciler.editing.placement import placement_path
from dsfleet.reconciler.editing.versions import etag_matches, object_version, quoted
from dsfleet.schemas.errors import DsfleetError
from dsfleet.schemas.findings import Finding
from dsfleet.schemas.placeholders import url_has_credentials
from dsfleet.schemas.redaction import redact

log = logging.getLogger("dsfleet.api")

__all__ = ["router"]

router = APIRouter(tags=["manifests"])

EVENT_KIND = "edit"


writes = error_responses(
    {
        401: "missing or wrong bearer token, or writes are disabled (no API token configured)",
        403: "the token's role may not do this (viewer; Policy edits need admin)",
        404: "no such object",
        408: "the request body did not arrive in time",
        409: "the object exists already, or git refused the commit",
        413: "the request body is larger than the server takes ([api] max_body_bytes)",
        503: "this server has no manifests directory",
    }
)
writes[412] = {"model": Stale, "description": "If-Match is not the object's current version"}
writes[422] = {"model": EditRefused, "description": "a malformed request, or the manifests' rules refuse it"}
reads = error_responses({404: "no such object", 503: "this server has no manifests directory"})
token = [Depends(require_write)]


@dataclass(frozen=True)
class _Set:
    root: Path
    files: dict[str, bytes]

    def text(self, name: str) -> str:
        return self.files[name].decode("utf-8", errors="replace")


def _root(ctx: ApiContext) -> Path:
    if ctx.manifests is None or not ctx.manifests.is_dir():
        raise ApiError(503, "this server has no manifests directory")
    return ctx.manifests


def _read_set(ctx: ApiContext) -> _Set:
    from dsfleet.reconciler.loading.discovery import discover

    root = _root(ctx)
    found, _problems = discover([root], ctx.limits.exclude)
    files: dict[str, bytes] = {}
    for mf in found:
        try:
            files[mf.relative] = mf.path.read_bytes()
        except OSError:
            continue
    return _Set(root, files)


def _locate(manifests: _Set, kind: str, name: str) -> tuple[str, str] | None:
    """(file, the object's document text) of an object, None when no file holds it."""
    for file in sorted(manifests.files):
        doc = find_object(manifests.text(file), kind, name)
        if doc is not None:
            return file, doc.body
    return None


def _scrub(value: Any) -> Any:
    """A value read from a file with every credential-carrying string redacted (an invalid file may hold one)."""
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, str) and url_has_credentials(value):
        return redact(value)
    return value


def _finding_out(f: Finding) -> FindingOut:
    from dsfleet.reconciler.cli.findings import format_finding

    loc = f.location
    return FindingOut(
        severity=f.severity.value,
        rule=f.rule,
        message=f.message,
        file=loc.file if loc else (f.source.file if f.source else None),
        line=loc.line if loc else None,
        column=loc.column if loc else None,
        text="\n".join(format_finding(f)),
    )


def _refused(findings: list[Finding]) -> ApiError:
    out = [_finding_out(f) for f in findings]
    first = out[0].text.splitlines()[0] if out else "the manifests' rules refuse this edit"
    return _Refusal(out, first)


class _Refusal(ApiError):
    def __init__(self, findings: list[FindingOut], message: str) -> None:
        super().__init__(422, message)
        self.findings = findings


def _check_version(if_match: str | None, version: str) -> None:
    if if_match is not None and not etag_matches(if_match, version):
        raise _StaleError(version)


class _StaleError(ApiError):
    def __init__(self, version: str) -> None:
        super().__init__(412, "the object changed since it was read (If-Match is stale); read it again")
        self.version = version


def _write(path: Path, text: str) -> None:
    """Replace the file (a temporary file renamed over it), or remove it when ``text`` is empty."""
    if not text:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".dsfleet-edit-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(temp, path.stat().st_mode & 0o777)
        else:
            os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


Change = Callable[[_Set], tuple[str, str]]
"""Given the set, the file to change and its new text."""

Changes = Callable[[_Set], tuple[str, dict[str, str]]]
"""Given the set, the file of the object named and the new text of every file the edit changes."""


def _edit(
    ctx: ApiContext,
    who: Identity,
    action: Literal["created", "updated", "deleted"],
    kind: str,
    name: str,
    change: Change,
    describe: str,
) -> EditResult:
    def one(manifests: _Set) -> tuple[str, dict[str, str]]:
        file, text = change(manifests)
        return file, {file: text}

    return _edit_files(ctx, who, action, kind, name, one, describe)


def _edit_files(
    ctx: ApiContext,
    who: Identity,
    action: Literal["created", "updated", "deleted"],
    kind: str,
    name: str,
    change: Changes,
    describe: str,
) -> EditResult:
    """Judge the set with the changed files, write them, commit them together (one commit)."""
    from dsfleet.reconciler.loading import gitwrite

    with ctx.edits_lock:
        manifests = _read_set(ctx)
        file, texts = change(manifests)
        before = check_files(manifests.files, ctx.limits)
        edited = dict(manifests.files)
        for changed, text in texts.items():
            if text:
                edited[changed] = text.encode("utf-8")
            else:
                edited.pop(changed, None)
        after = check_files(edited, ctx.limits)
        errors = new_errors(before, after)
        present = (kind, name) in after.fleet.sources
        if not errors and present != (action != "deleted"):
            errors = [f for f in after.errors if f.source and f.source.file in texts] or errors
            if not errors:
                raise ApiError(422, f"{kind} {name}: the edit does not give a valid {kind} named {name}")
        if errors:
            log.info("edit refused by=%s kind=%s name=%s errors=%d", who.name, kind, name, len(errors))
            raise _refused(errors)

        def restore() -> None:
            for changed in texts:
                _write(
                    manifests.root / changed, manifests.text(changed) if changed in manifests.files else ""
                )

        try:
            for changed, text in texts.items():
                _write(manifests.root / changed, text)
        except OSError:
            restore()
            raise
        commit, pushed = None, False
        if gitwrite.work_tree(manifests.root) is not None:
            message = f"{describe} (by {who.name} from the API)"
            try:
                commit = gitwrite.commit_files(
                    manifests.root,
                    [Path(changed) for changed in texts],
                    message,
                    who.name,
                    f"{who.name}@dsfleet.invalid",
                )
            except DsfleetError as exc:
                restore()
                log.warning("edit not committed kind=%s name=%s error=%s", kind, name, exc)
                raise ApiError(409, f"git refused the commit ({exc}); nothing was changed") from None
            if ctx.edits_push is not None:
                remote, branch = ctx.edits_push
                try:
                    gitwrite.push(manifests.root, remote, branch or gitwrite.current_branch(manifests.root))
                    pushed = True
                except DsfleetError as exc:
                    log.warning("edit not pushed commit=%s remote=%s error=%s", commit[:12], remote, exc)
        version = None
        text = texts.get(file, "")
        doc = find_object(text, kind, name) if text else None
        if doc is not None and action != "deleted":
            version = object_version(doc.body)
    files = ", ".join(sorted(texts))
    log.info(
        "edit %s by=%s role=%s kind=%s name=%s file=%s commit=%s",
        action,
        who.name,
        who.role.label,
        kind,
        name,
        files,
        (commit or "-")[:12],
    )
    _event(
        ctx,
        f"{describe} by {who.name} ({who.role.label}) in {files}"
        + (f", commit {commit[:12]}" if commit else ""),
    )
    warnings = [_finding_out(f).text for f in after.warnings if f.source and f.source.file in texts]
    return EditResult(
        action=action,
        kind=kind,
        name=name,
        file=file,
        version=version,
        commit=commit,
        pushed=pushed,
        warnings=warnings,
    )


def _event(ctx: ApiContext, message: str) -> None:
    try:
        ctx.record_event(datetime.now(UTC), EVENT_KIND, message)
    except DsfleetError as exc:
        log.warning("edit event not recorded error=%s", type(exc).__name__)


def _as_data(kind: str, name: str | None, body: ManifestBody) -> dict[str, Any]:
    if body.kind is not None and body.kind != kind:
        raise ApiError(422, f"kind: the body is a {body.kind}, the path names {kind}")
    if name is not None and body.metadata.get("name") != name:
        raise ApiError(
            422, f"metadata.name: must be {name!r}, as in the path (a rename is a delete and a create)"
        )
    return {"apiVersion": body.apiVersion, "kind": kind, "metadata": body.metadata, "spec": body.spec}


def _answer(result: EditResult, status: int = 200) -> JSONResponse:
    headers = {"ETag": quoted(result.version)} if result.version else {}
    return JSONResponse(result.model_dump(mode="json"), status_code=status, headers=headers)


# -------------------------------------------------------------------------------------------------- routes


@router.get("/manifests/{kind}", response_model=ManifestList, responses=reads)
def list_objects(ctx: Context, kind: Kind) -> ManifestList:
    """Every object of a kind in the manifests directory, with its file and version."""
    manifests = _read_set(ctx)
    items = [
        ManifestObject(kind=kind, name=doc.name, file=file, version=object_version(doc.body))
        for file in sorted(manifests.files)
        for doc in split(manifests.text(file))
        if doc.kind == kind and doc.name is not None
    ]
    return ManifestList(items=sorted(items, key=lambda item: item.name))


@router.get("/manifests/{kind}/{name}", response_model=ManifestObject, responses=reads)
def get_object(ctx: Context, kind: Kind, name: str, response: Response) -> ManifestObject:
    """One object as in its file, with its version in the body and the ``ETag`` header."""
    manifests = _read_set(ctx)
    for file in sorted(manifests.files):
        doc = find_object(manifests.text(file), kind, name)
        if doc is not None:
            version = object_version(doc.body)
            response.headers["ETag"] = quoted(version)
            data = _scrub(doc.data)
            return ManifestObject(kind=kind, name=name, file=file, version=version, object=data)
    raise ApiError(404, f"no {kind} named {name!r}")


@router.post(
    "/manifests/{kind}", status_code=201, response_model=EditResult, responses=writes, dependencies=token
)
def create_object(
    request: Request, ctx: Context, kind: Kind, body: Annotated[ManifestBody, Body()]
) -> JSONResponse:
    """Create an object; it goes to the file the placement rule names (``cameras/<zone>.yaml``, …)."""
    who = caller(request, ctx)
    data = _as_data(kind, None, body)
    name = str(body.metadata.get("name", ""))

    def change(manifests: _Set) -> tuple[str, str]:
        if name and _locate(manifests, kind, name) is not None:
            raise ApiError(409, f"{kind} {name!r} exists already")
        file = placement_path(kind, data)
        return file, add_object(manifests.text(file) if file in manifests.files else "", data)

    return _answer(_edit(ctx, who, "created", kind, name, change, f"Create {kind} {name}"), 201)


@router.put("/manifests/{kind}/{name}", response_model=EditResult, responses=writes, dependencies=token)
def update_object(
    request: Request,
    ctx: Context,
    kind: Kind,
    name: str,
    body: Annotated[ManifestBody, Body()],
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Replace an object (in its own file, changing only its lines); ``If-Match``: the version it was read at."""
    who = caller(request, ctx)
    data = _as_data(kind, name, body)

    def change(manifests: _Set) -> tuple[str, str]:
        found = _locate(manifests, kind, name)
        if found is None:
            raise ApiError(404, f"no {kind} named {name!r}")
        file, current = found
        _check_version(if_match, object_version(current))
        try:
            return file, replace_object(manifests.text(file), kind, name, data)
        except EditError as exc:
            raise ApiError(409, str(exc)) from None

    return _answer(_edit(ctx, who, "updated", kind, name, change, f"Update {kind} {name}"))


@router.delete("/manifests/{kind}/{name}", response_model=EditResult, responses=writes, dependencies=token)
def delete_object(
    request: Request, ctx: Context, kind: Kind, name: str, if_match: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """Delete an object (its document leaves its file; a file left empty is removed). Refused while something
    still needs it (an instance naming a camera, …): the rules say what."""
    who = caller(request, ctx)

    def change(manifests: _Set) -> tuple[str, str]:
        found = _locate(manifests, kind, name)
        if found is None:
            raise ApiError(404, f"no {kind} named {name!r}")
        file, current = found
        _check_version(if_match, object_version(current))
        return file, remove_object(manifests.text(file), kind, name)

    return _answer(_edit(ctx, who, "deleted", kind, name, change, f"Delete {kind} {name}"))


def _instance_cameras(
    request: Request, ctx: Context, name: str, camera: str, add: bool, if_match: str | None
) -> JSONResponse:
    who = caller(request, ctx)

    def edited(cameras: list[Any]) -> list[Any]:
        if add:
            return cameras if camera in cameras else [*cameras, camera]
        if camera not in cameras:
            raise ApiError(404, f"DsInstance {name!r} does not list camera {camera!r}")
        return [c for c in cameras if c != camera]

    def change(manifests: _Set) -> tuple[str, str]:
        return _with_cameras(manifests, name, if_match, edited)

    verb = f"Add camera {camera} to" if add else f"Remove camera {camera} from"
    return _answer(_edit(ctx, who, "updated", "DsInstance", name, change, f"{verb} DsInstance {name}"))


@router.post(
    "/manifests/DsInstance/{name}/cameras", response_model=EditResult, responses=writes, dependencies=token
)
def assign_camera(
    request: Request,
    ctx: Context,
    name: str,
    body: Annotated[CameraAssignment, Body()],
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Add a camera to an instance's ``spec.cameras`` (a camera another instance lists is refused by the
    rules: move it by removing it there first)."""
    return _instance_cameras(request, ctx, name, body.camera, True, if_match)


@router.delete(
    "/manifests/DsInstance/{name}/cameras/{camera}",
    response_model=EditResult,
    responses=writes,
    dependencies=token,
)
def unassign_camera(
    request: Request, ctx: Context, name: str, camera: str, if_match: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """Remove a camera from an instance's ``spec.cameras``."""
    return _instance_cameras(request, ctx, name, camera, False, if_match)


def _with_cameras(
    manifests: _Set, name: str, version: str | None, edit: Callable[[list[Any]], list[Any]]
) -> tuple[str, str]:
    """(file, new text) of the DsInstance ``name`` with ``spec.cameras`` edited; 404 if absent, 412 if stale."""
    found = _locate(manifests, "DsInstance", name)
    if found is None:
        raise ApiError(404, f"no DsInstance named {name!r}")
    file, current = found
    _check_version(version, object_version(current))
    doc = find_object(manifests.text(file), "DsInstance", name)
    assert doc is not None
    data = dict(doc.data)
    spec = dict(data.get("spec") or {})
    spec["cameras"] = edit(list(spec.get("cameras") or []))
    data["spec"] = spec
    return file, replace_object(manifests.text(file), "DsInstance", name, data)


@router.post(
    "/manifests/DsInstance/{name}/cameras/move",
    response_model=EditResult,
    responses=writes,
    dependencies=token,
)
def move_camera(
    request: Request,
    ctx: Context,
    name: str,
    body: Annotated[CameraMove, Body()],
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Move a camera to this instance from the one that lists it (``fromInstance``): both ``spec.cameras``
    change in one commit, judged together, so the move is all or nothing. ``If-Match`` is this instance's
    version, ``fromVersion`` the other's. The answer's version is this instance's."""
    who = caller(request, ctx)
    camera, source = body.camera, body.fromInstance
    if source == name:
        raise ApiError(422, f"fromInstance: the camera is moved to {name!r}, not from it")

    def take(cameras: list[Any]) -> list[Any]:
        if camera not in cameras:
            raise ApiError(404, f"DsInstance {source!r} does not list camera {camera!r}")
        return [c for c in cameras if c != camera]

    def give(cameras: list[Any]) -> list[Any]:
        return cameras if camera in cameras else [*cameras, camera]

    def change(manifests: _Set) -> tuple[str, dict[str, str]]:
        from_file, from_text = _with_cameras(manifests, source, body.fromVersion, take)
        to_file = _locate(manifests, "DsInstance", name)
        if to_file is None:
            raise ApiError(404, f"no DsInstance named {name!r}")
        staged = _Set(manifests.root, {**manifests.files, from_file: from_text.encode("utf-8")})
        file, text = _with_cameras(staged, name, if_match, give)
        return file, {from_file: from_text, file: text}

    describe = f"Move camera {camera} from {source} to {name}"
    return _answer(_edit_files(ctx, who, "updated", "DsInstance", name, change, describe))


@router.get("/pending", response_model=Pending, responses=reads, response_model_by_alias=True)
def get_pending(ctx: Context) -> Pending:
    """What applying the manifests directory now would change: the plan ``dsfleet diff --output json`` prints,
    and the git commits since the last applied revision (the API's edits among them)."""
    from dsfleet.reconciler.applying import stored_configs
    from dsfleet.reconciler.compiling.desired import desired_state
    from dsfleet.reconciler.loading import gitwrite
    from dsfleet.reconciler.planning.plans import compute_plan
    from dsfleet.reconciler.planning.reports import plan_json

    root = _root(ctx)
    desired = desired_state([root], limits=ctx.limits)
    store = ctx.store()
    last = store.last_accepted_revision()
    base = last.git_commit if last is not None else None
    commits: list[PendingCommit] = []
    head = None
    if gitwrite.work_tree(root) is not None:
        head = gitwrite.head_commit(root)
        since = gitwrite.commits_since(root, base) if base or head else []
        commits = [
            PendingCommit(sha=c.sha, author=c.author, subject=c.subject, byApi=c.by_api) for c in since or []
        ]
    findings = [_finding_out(f) for f in desired.loaded.findings]
    if desired.configs is None:
        return Pending(lastApplied=base, head=head, commits=commits, valid=False, findings=findings)
    plan = plan_json(compute_plan(desired.configs, stored_configs(store, desired.configs)))
    return Pending(lastApplied=base, head=head, commits=commits, valid=True, plan=plan, findings=findings)


@router.post(
    "/pending/discard",
    response_model=Discarded,
    responses=error_responses(
        {
            401: "missing or wrong bearer token",
            403: "the token's role may not do this",
            409: "something other than the API's own commits would be dropped, the work tree has changes, the "
            "manifests directory is no git work tree, or no applied revision carries a git commit",
        }
    ),
    dependencies=token,
)
def discard_pending(request: Request, ctx: Context) -> Discarded:
    """Drop the API's edits since the last applied revision (``git reset --hard`` to its commit). Refused when
    that would drop anything else: a commit not made by the API, or uncommitted changes."""
    from dsfleet.reconciler.loading import gitwrite

    who = caller(request, ctx)
    root = _root(ctx)
    if gitwrite.work_tree(root) is None:
        raise ApiError(409, "the manifests directory is not in a git work tree: there is nothing to discard")
    last = ctx.store().last_accepted_revision()
    base = last.git_commit if last is not None else None
    if not base:
        raise ApiError(409, "no applied revision carries a git commit: nothing to reset to")
    with ctx.edits_lock:
        since = gitwrite.commits_since(root, base)
        if since is None:
            raise ApiError(
                409, f"the last applied commit {base[:12]} is not in HEAD's history: refusing to reset"
            )
        others = [c for c in since if not c.by_api]
        if others:
            raise ApiError(
                409,
                f"commit {others[0].sha[:12]} ({others[0].subject!r} by {others[0].author}) was not made by the "
                "API: discard drops only the API's edits; revert it with git",
            )
        if gitwrite.is_dirty(root):
            raise ApiError(409, "the manifests directory has uncommitted changes: discard would lose them")
        if since:
            gitwrite.reset_to(root, base)
    dropped = [c.sha for c in since]
    log.info("edits discarded by=%s commits=%d base=%s", who.name, len(dropped), base[:12])
    if dropped:
        _event(
            ctx,
            f"{len(dropped)} pending edit(s) discarded by {who.name} ({who.role.label}); back at {base[:12]}",
        )
    return Discarded(discarded=dropped, head=gitwrite.head_commit(root))


def install_edit_errors(app: Any) -> None:
    """The 422 of a refused edit carries its findings; the 412 of a stale one the current version."""

    async def refused(_request: Request, exc: _Refusal) -> JSONResponse:
        return error_body(
            422, exc.message, fields=[], findings=[f.model_dump(mode="json") for f in exc.findings]
        )

    async def stale(_request: Request, exc: _StaleError) -> JSONResponse:
        answer = error_body(412, exc.message, version=exc.version)
        answer.headers["ETag"] = quoted(exc.version)
        return answer

    app.exception_handler(_Refusal)(refused)
    app.exception_handler(_StaleError)(stale)

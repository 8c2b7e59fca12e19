"""The DeepStream corpus (tests/data/deepstream-corpus): real public configs, imported, validated, rendered and
compared by their effective configuration (:mod:`tests.support.effective`) under real GLib.

``SOURCES.tsv`` lists each file (kind, repo, path, commit, licence, origin: the directory the file sits in, in
the container, when DeepStream runs it: NVIDIA's samples under /opt/nvidia/deepstream/deepstream, a community
project where its README puts it). Files are stored under ``<owner>__<repo>/<path>``, so relative paths between
them work as in the repository. :func:`run_corpus` gives one :class:`Outcome` per app config and per GIE file:

* imported: the importer accepted it (else ``refusal``: its gcc-style message);
* validated: the manifests it wrote load with no error (warnings allowed);
* rendered: dsfleet rendered the instance (or the GIE file);
* equal: the effective configuration of the render equals the original's (else ``differences``);
* dangling: path values of the rendered files that are relative and name nothing the container has.

Used by tests/integration/test_deepstream_corpus.py and benchmarks/deepstream_corpus.py.
"""

from __future__ import annotations

import csv
import posixpath
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dsfleet.reconciler.compiling.keyfilewriter import render_gie_mapping
from dsfleet.reconciler.compiling.rendering import render_instance
from dsfleet.reconciler.importers.deepstreamapp import AppImportError, import_app, spec_of
from dsfleet.reconciler.importers.keyfilereader import parse_keyfile, read_typed
from dsfleet.reconciler.importers.legacy import render_yaml
from dsfleet.reconciler.importers.legacyrows import manifest_document
from dsfleet.reconciler.importers.nvinfer import detect_format, import_keyfile
from dsfleet.reconciler.importers.yamlconfigs import keyfile_name
from dsfleet.reconciler.loading.manifestsets import load_manifests
from dsfleet.resolution.files import APP_CONFIG
from dsfleet.resolution.instances import resolve_instance
from dsfleet.schemas.deepstream import GieFormat, KeySpec, ValueKind, spec_for
from dsfleet.schemas.nodeconfigs import CONFIGS_DIR, ENGINE_DIR
from tests.support import effective as eff
from tests.support.glibcheck import GlibChecker

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "deepstream-corpus"
STOCK_REPOS = ("hiennguyen9874/deepstream-sources",)
"""Copies of NVIDIA's DeepStream SDK (its samples): every app config of them must come back equal."""


@dataclass(frozen=True)
class Entry:
    kind: str
    repo: str
    path: str
    commit: str
    licence: str
    origin: str
    root: Path = CORPUS

    @property
    def host(self) -> Path:
        return self.root / self.repo.replace("/", "__") / self.path

    @property
    def container(self) -> str:
        return posixpath.join(self.origin, PurePosixPath(self.path).name)

    @property
    def repo_root(self) -> str:
        """The repository's root directory in the container."""
        depth = len(PurePosixPath(self.path).parent.parts)
        return posixpath.normpath(posixpath.join(self.origin, *([".."] * depth)))

    @property
    def stock(self) -> bool:
        return self.repo in STOCK_REPOS

    @property
    def label(self) -> str:
        return f"{self.repo}:{self.path}"


def entries(root: Path = CORPUS, listing: str = "SOURCES.tsv") -> list[Entry]:
    """The files ``listing`` names (``LISTED.tsv``: the ones whose licence forbids a copy, listed only)."""
    with (root / listing).open(encoding="utf-8") as f:
        return [Entry(r["kind"], r["repo"], r["path"], r["commit"], r["licence"], r["origin"], root)
                for r in csv.DictReader(f, delimiter="\t")]  # fmt: skip


class ContainerFiles:
    """What the container sees of the corpus: each file's directory at its ``origin`` (and what lies around it in
    its repository, at the same relative place)."""

    def __init__(self, items: Iterable[Entry]) -> None:
        self.dirs = sorted({(e.origin, e.host.parent, e.root / e.repo.replace("/", "__")) for e in items})

    def host(self, path: str) -> Path | None:
        candidates = []
        for origin, directory, repo in self.dirs:
            relative = posixpath.relpath(path, origin)
            target = Path(posixpath.normpath(posixpath.join(str(directory), relative)))
            if target.is_relative_to(repo) and target.is_file():
                candidates.append((relative.count(".."), str(target), target))
        return min(candidates)[2] if candidates else None

    def read(self, path: str) -> str | None:
        found = self.host(path)
        if found is None:
            return None
        try:
            return found.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return None

    def read_pair(self, path: str) -> tuple[str, str] | None:
        text = self.read(path)
        return None if text is None else (text, path)


@dataclass
class Outcome:
    entry: Entry
    imported: bool = False
    validated: bool = False
    rendered: bool = False
    equal: bool = False
    dangling: list[str] = field(default_factory=list)
    refusal: str = ""
    errors: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    outcome: Outcome
    original: eff.Reader
    rendered: eff.Reader | None = None
    rendered_path: str = ""
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)
    gpu: int = 0


def _rendered_reader(files: dict[str, str], container: ContainerFiles, workdir: str) -> eff.Reader:
    def read(path: str) -> str | None:
        if posixpath.dirname(path) == CONFIGS_DIR:
            return files.get(posixpath.basename(path))
        return container.read(path)  # the image and the mounts: the original files at their paths

    return eff.Reader(read, workdir)


def run_corpus(items: list[Entry], glib: GlibChecker) -> list[Outcome]:
    """Import, validate and render every app config and GIE file of ``items``; compare effective configs."""
    container = ContainerFiles(items)
    pending: list[_Pending] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, entry in enumerate(items):
            if entry.kind == "app":
                pending.append(_app(entry, container, Path(tmp) / f"app{n}"))
            elif entry.kind == "gie":
                pending.append(_gie(entry, container))
    for p in pending:
        if p.outcome.rendered:
            if p.outcome.entry.kind == "app":
                eff.plan_app(p.original, p.outcome.entry.container)
                assert p.rendered is not None
                eff.plan_app(p.rendered, p.rendered_path)
            else:
                eff.plan_gie(p.original, p.outcome.entry.container)
                assert p.rendered is not None
                eff.plan_gie(p.rendered, p.rendered_path)
    readers = [r for p in pending for r in (p.original, p.rendered) if r is not None]
    eff.fetch(glib, readers)
    for p in pending:
        if not p.outcome.rendered or p.rendered is None:
            continue
        if p.outcome.entry.kind == "app":
            a = eff.app_effective(p.original, p.outcome.entry.container)
            b = eff.app_effective(p.rendered, p.rendered_path, p.secrets)
            b["gpus"] = [p.gpu] if b["gpus"] else []  # the container sees the host's GPU spec.gpu as 0
        else:
            a = eff.gie_effective(p.original, p.outcome.entry.container)
            b = eff.gie_effective(p.rendered, p.rendered_path)
        p.outcome.differences = eff.differences(a, b)
        p.outcome.equal = not p.outcome.differences
    return [p.outcome for p in pending]


def _app(entry: Entry, container: ContainerFiles, out: Path) -> _Pending:
    outcome = Outcome(entry)
    original = eff.Reader(container.read, entry.origin)
    pending = _Pending(outcome, original)
    try:
        result = import_app(entry.host.read_bytes().decode("utf-8"), entry.container, container.read_pair,
                            origin=entry.origin)  # fmt: skip
    except AppImportError as exc:
        outcome.refusal = str(exc)
        return pending
    outcome.imported = True
    outcome.warnings = result.warnings
    out.mkdir(parents=True)
    docs: list[dict[str, Any]] = [*result.cameras, result.instance]
    if result.profile is not None:
        docs.append(result.profile)
    node = manifest_document("Node", "node-a", {"gpus": [0, 1, 2, 3]})
    instance = dict(result.instance)
    instance["spec"] = {**instance["spec"], "node": "node-a"}
    docs = [node, *result.cameras, instance, *([result.profile] if result.profile else [])]
    (out / "manifests.yaml").write_text(render_yaml(docs, "corpus"))
    loaded = load_manifests([out])
    outcome.errors = [f"{f.message} [{f.rule}]" for f in loaded.errors]
    outcome.validated = not outcome.errors
    fleet = loaded.fleet
    name = result.instance["metadata"]["name"]
    if name not in fleet.instances:
        return pending
    res = resolve_instance(fleet, fleet.instances[name])
    try:
        files = {f.path: f.content for f in render_instance(fleet, res)}
    except (ValueError, TypeError, KeyError) as exc:
        outcome.errors.append(f"render: {exc}")
        return pending
    outcome.rendered = True
    spec = fleet.instances[name].spec
    workdir = spec.workingDir or ENGINE_DIR
    pending.rendered = _rendered_reader(files, container, workdir)
    pending.rendered_path = f"{CONFIGS_DIR}/{APP_CONFIG}"
    pending.secrets = {s.ref: (s.username, s.password) for s in result.secrets}
    pending.gpu = spec.gpu
    mounted = [ENGINE_DIR, *(m.target for m in spec.mounts)]
    outcome.dangling = dangling(files, mounted, workdir)
    return pending


def _gie(entry: Entry, container: ContainerFiles) -> _Pending:
    outcome = Outcome(entry)
    original = eff.Reader(container.read, entry.origin)
    pending = _Pending(outcome, original)
    result = import_keyfile(
        entry.host.read_bytes().decode("utf-8"), entry.container, PurePosixPath(entry.origin)
    )
    errors = [f for f in result.findings if f.is_error]
    if errors or not result.gie:
        first = errors[0] if errors else None
        where = f"{entry.path}:{first.location.line}:{first.location.column}" if first else entry.path
        outcome.refusal = f"{where}: error: {first.message if first else 'not a GIE file'}"
        return pending
    outcome.imported = True
    with tempfile.TemporaryDirectory() as tmp:
        doc = manifest_document("InferenceProfile", "corpus", {"gies": [result.gie]})
        (Path(tmp) / "profile.yaml").write_text(render_yaml([doc], "corpus"))
        loaded = load_manifests([tmp])
        outcome.errors = [f"{f.message} [{f.rule}]" for f in loaded.errors]
        outcome.validated = not outcome.errors
    try:
        text = render_gie_mapping(result.gie)
    except (ValueError, TypeError) as exc:
        outcome.errors.append(f"render: {exc}")
        return pending
    outcome.rendered = True
    name = keyfile_name(entry.path)
    pending.rendered = _rendered_reader({name: text}, container, ENGINE_DIR)
    pending.rendered_path = f"{CONFIGS_DIR}/{name}"
    outcome.dangling = dangling({name: text}, [ENGINE_DIR], ENGINE_DIR)
    return pending


def dangling(files: dict[str, str], mounted: list[str], workdir: str) -> list[str]:
    """``file: [group] key=value`` for every relative path of the rendered key files that names no rendered file
    and reaches no mounted directory (deepstream-app, nvinfer and nvdspreprocess keys, file:// URIs)."""
    out: list[str] = []
    for name, text in sorted(files.items()):
        kf = parse_keyfile(text, name)
        if not kf.loaded:
            continue
        fmt = GieFormat.NVINFER if name != APP_CONFIG else None
        if fmt is not None:
            found, _ = detect_format(kf)
            if found is None:
                continue  # an imported text file, not a key file DeepStream reads
            fmt = found
        for group in kf.groups:
            for key, entry in group.effective().items():
                if fmt is None:
                    spec = spec_of(group.name, key)
                else:
                    table = eff.gie_tables(fmt, group.name)
                    spec = spec_for(table, key) if table is not None else None
                value, _ = read_typed(KeySpec(key, ValueKind.STRING), entry.raw)
                if not isinstance(value, str) or not value:
                    continue
                if key == "uri" and value.startswith("file://"):
                    value, spec = value[len("file://") :], KeySpec("uri", ValueKind.STRING, path=True)
                if spec is None or not spec.is_path or value.startswith("/") or value == "auto":
                    continue
                if spec.cwd_relative and "/" not in value and spec.path_kind is None:
                    continue
                if spec.cwd_relative and spec.path_kind is not None and spec.path_kind.value == "output":
                    continue  # written relative to the working directory: the writable engine volume
                if spec.cwd_relative and "/" not in value and spec.path_kind.value == "model":  # type: ignore[union-attr]
                    continue  # a library name dlopen searches for
                resolved = posixpath.normpath(
                    posixpath.join(workdir if spec.cwd_relative else CONFIGS_DIR, value)
                )
                if posixpath.dirname(resolved) == CONFIGS_DIR and posixpath.basename(resolved) in files:
                    continue
                if any(resolved == d or resolved.startswith(d.rstrip("/") + "/") for d in mounted):
                    continue
                out.append(f"{name}: [{group.name}] {key}={value}")
    return out

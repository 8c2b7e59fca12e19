"""Load a manifest set: find the files (:mod:`dsfleet.reconciler.loading.discovery`), parse them safely,
validate every document, build the Fleet.

The set is judged as a whole: ``LoadedManifests.findings`` carries every error and warning with its file, line
and column; the caller decides (errors reject the revision). Parses are cached by content hash so a watch loop
re-reads only what changed.
"""

from __future__ import annotations

import bisect
import functools
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from dsfleet.reconciler.loading.discovery import (
    RACY_NS,
    Discovered,
    ManifestFile,
    discover,
    file_finding,
)
from dsfleet.reconciler.loading.schemafindings import RULE_UNKNOWN_FIELD, findings_from_error, suggest
from dsfleet.reconciler.loading.yamlfiles import (
    DEFAULT_LIMITS,
    Limits,
    Locator,
    ParsedYaml,
    YamlProblem,
    decode_text,
    parse_yaml,
    size_text,
)
from dsfleet.schemas import API_VERSION
from dsfleet.schemas.findings import INVALID_TARGET, Finding, Location, Note, PathItem, Severity, SourceRef
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.hashing import sha256_hex
from dsfleet.schemas.manifests import KIND_NAMES, MODELS, Manifest
from dsfleet.schemas.placeholders import url_has_credentials

KEY_RULES = frozenset({RULE_UNKNOWN_FIELD, "yaml-duplicate-key", "duplicate-name"})


@dataclass(frozen=True)
class ParsedFile:
    """One file's documents, validated (content-hash cached)."""

    digest: str
    text: str
    manifests: tuple[tuple[int, Manifest], ...]
    findings: tuple[Finding, ...]
    invalid: tuple[tuple[int, str, str], ...] = ()
    """(document, kind, name) of documents that failed their schema but whose kind and name are readable: they
    still count as defined, so references to them are not reported as missing."""
    locations: dict[tuple[int, tuple[PathItem, ...], bool], tuple[int, int]] = field(
        default_factory=dict, compare=False, repr=False
    )
    """Lines and columns already found in this text (:func:`locate_findings`): a file that did not change keeps
    its parsed object in the cache, so the findings of the next load are located without parsing it again."""


@dataclass
class LoadedManifests:
    fleet: Fleet
    findings: list[Finding]
    files: list[str]
    digest: str
    """sha256 over (file name relative to its manifests root, content hash) of every file: the manifests hash of a
    revision, the same however the root's path is spelled."""
    texts: dict[str, str] = field(default_factory=dict)
    locations: dict[str, dict[tuple[int, tuple[PathItem, ...], bool], tuple[int, int]]] = field(
        default_factory=dict, repr=False
    )
    """Per file, the memo of :attr:`ParsedFile.locations` (see :func:`locate_findings`)."""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors


def _problem_finding(file: str, problem: YamlProblem) -> Finding:
    notes: tuple[Note, ...] = ()
    if problem.note:
        notes = (
            Note(
                message=problem.note,
                location=Location(file=file, line=problem.note_line, column=problem.note_column),
            ),
        )
    return Finding(
        severity=Severity.ERROR,
        rule=problem.rule,
        message=problem.message,
        source=SourceRef(file=file, document=problem.document or 0),
        location=Location(file=file, line=problem.line, column=problem.column),
        notes=notes,
    )


MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec")
RULE_NOT_A_MANIFEST = "not-a-manifest"


def is_consequence(finding: Finding) -> bool:
    """A finding caused by another one (a reference to a document that failed its schema): printed after the
    root causes, so the first lines of the output are the ones to fix."""
    return INVALID_TARGET in finding.message


def identity(data: Any) -> tuple[str, str] | None:
    """(kind, name) of a document, when both are readable (also for a document that fails its schema)."""
    if not isinstance(data, dict):
        return None
    kind, metadata = data.get("kind"), data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(kind, str) and kind in MODELS and isinstance(name, str) and name:
        return kind, name
    return None


def validate_document(data: Any, source: SourceRef) -> tuple[Manifest | None, list[Finding]]:
    """One YAML document → a manifest, or findings (with YAML paths; locations are resolved later). A mapping
    with none of ``apiVersion``, ``kind``, ``metadata``, ``spec`` (a compose file, a CI config) is skipped with
    a ``not-a-manifest`` warning."""
    if isinstance(data, dict) and not any(key in data for key in MANIFEST_KEYS):
        return None, [
            Finding(
                severity=Severity.WARNING,
                rule=RULE_NOT_A_MANIFEST,
                message="not a dsfleet manifest (none of apiVersion, kind, metadata, spec): skipped",
                source=source,
            )
        ]
    if not isinstance(data, dict):
        return None, [
            Finding(
                severity=Severity.ERROR, rule="schema", message="a manifest must be a mapping", source=source
            )
        ]
    api = data.get("apiVersion")
    kind = data.get("kind")
    if api != API_VERSION:
        message = (
            "apiVersion: required field is missing" if api is None else f"apiVersion: must be {API_VERSION}"
        )
        return None, [
            Finding(severity=Severity.ERROR, rule="schema", message=message, source=source.at("apiVersion"))
        ]
    if not isinstance(kind, str) or kind not in MODELS:
        if kind is None:
            message = "kind: required field is missing"
        else:
            hint = suggest(kind, KIND_NAMES) if isinstance(kind, str) else None
            message = "kind: unknown kind; expected one of " + ", ".join(KIND_NAMES)
            if hint:
                message += f" (did you mean {hint}?)"
        return None, [
            Finding(severity=Severity.ERROR, rule="schema", message=message, source=source.at("kind"))
        ]
    model: type[BaseModel] = MODELS[kind]
    try:
        manifest = model.model_validate(data)
    except ValidationError as exc:
        findings = findings_from_error(exc, model, data, source)
        spec = data.get("spec")
        url = spec.get("url") if kind == "Camera" and isinstance(spec, dict) else None
        if isinstance(url, str) and url_has_credentials(url):
            # policies run on valid documents only; a leaked credential is reported regardless
            findings.append(
                Finding(
                    severity=Severity.ERROR,
                    rule="camera-url-credentials",
                    message="spec.url: the URL carries credentials (not shown); move them to a secret and set "
                    "spec.credentials.secretRef",
                    source=source.at("spec", "url"),
                )
            )
        return None, findings
    return manifest, []  # type: ignore[return-value]


def _valid_manifest(data: Any) -> Manifest | None:
    """The manifest of a document with this apiVersion and a known kind that passes its schema, else None (then
    :func:`validate_document` says why, with its findings)."""
    if type(data) is not dict or data.get("apiVersion") != API_VERSION:
        return None
    kind = data.get("kind")
    model = MODELS.get(kind) if type(kind) is str else None
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


class ManifestCache:
    """Parsed + validated files by content hash (the coordinator keeps one across watch ticks).

    A file whose (size, mtime, inode) did not change since it was last read is not read again at all; any other
    file is read and looked up by its content hash, so touching a file without changing it costs one hash.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self._entries: dict[tuple[str, str], ParsedFile] = {}
        self._stats: dict[str, tuple[tuple[int, int, int], ParsedFile]] = {}
        self._max = max_entries
        self.discovered: Discovered | None = None
        """The last walk of :func:`discover` through this cache."""
        self.views: Views | None = None
        """What the last load through this cache derived from the parses (:func:`_views`)."""
        self.built: Built | None = None
        """The last fleet :func:`build_fleet_cached` built through this cache."""
        self.located: dict[int, tuple[Finding, Finding]] = {}
        """The findings the last :func:`locate_findings` through this cache located (see there)."""

    def get(self, display: str, digest: str) -> ParsedFile | None:
        return self._entries.get((display, digest))

    def put(self, display: str, parsed: ParsedFile) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
            self._stats.clear()
        self._entries[(display, parsed.digest)] = parsed

    def by_stat(self, display: str, stat: os.stat_result) -> ParsedFile | None:
        hit = self._stats.get(display)
        if hit is not None and hit[0] == (stat.st_size, stat.st_mtime_ns, stat.st_ino):
            return hit[1]
        return None

    def kept(self, display: str) -> ParsedFile | None:
        """The parse of the file as its last trusted ``stat`` saw it (see :meth:`remember_stat`)."""
        hit = self._stats.get(display)
        return hit[1] if hit is not None else None

    def remember_stat(self, display: str, stat: os.stat_result, parsed: ParsedFile) -> None:
        if time.time_ns() - stat.st_mtime_ns < RACY_NS:  # too fresh to vouch for its content (see RACY_NS)
            self._stats.pop(display, None)
            return
        self._stats[display] = ((stat.st_size, stat.st_mtime_ns, stat.st_ino), parsed)


def parse_file(display: str, data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedFile:
    """Bytes of one file → validated manifests and findings (pure)."""
    digest = sha256_hex(data)
    text, problem = decode_text(data, limits)
    if text is None:
        assert problem is not None
        return ParsedFile(digest, "", (), (_problem_finding(display, problem),))
    parsed: ParsedYaml = parse_yaml(text, limits)
    findings = [_problem_finding(display, p) for p in parsed.problems]
    manifests: list[tuple[int, Manifest]] = []
    invalid: list[tuple[int, str, str]] = []
    broken = any(p.rule != "yaml-duplicate-key" for p in parsed.problems)
    for doc in parsed.documents:  # a duplicate key does not stop the rest of the file
        if doc.data is None:
            continue  # empty document
        if broken:  # before a syntax error: counted as defined, not validated (no locations)
            if (who := identity(doc.data)) is not None:
                invalid.append((doc.index, *who))
            continue
        valid = _valid_manifest(doc.data)
        if valid is not None:  # the common case, without building a source for findings there are none of
            manifests.append((doc.index, valid))
            continue
        manifest, doc_findings = validate_document(doc.data, SourceRef(file=display, document=doc.index))
        findings.extend(doc_findings)
        if manifest is not None:
            manifests.append((doc.index, manifest))
        elif (who := identity(doc.data)) is not None and any(f.is_error for f in doc_findings):
            invalid.append((doc.index, *who))
    return ParsedFile(digest, text, tuple(manifests), tuple(findings), tuple(invalid))


def read_files(
    files: Iterable[ManifestFile],
    limits: Limits = DEFAULT_LIMITS,
    cache: ManifestCache | None = None,
    hint: AbstractSet[str] | None = None,
) -> tuple[list[tuple[str, ParsedFile]], list[Finding]]:
    """Read and parse each file (through ``cache`` when given). Pure apart from the reads: how often the cyclic
    collector runs meanwhile is the process's policy (``dsfleet.reconciler.cli.main``), not the loader's.
    ``hint``: the real paths a file watcher saw change since the last read through ``cache``; a file it does not
    name whose last ``stat`` the cache kept is taken as it was, without a ``stat``."""
    out: list[tuple[str, ParsedFile]] = []
    findings: list[Finding] = []
    for mf in files:
        if hint is not None and cache is not None and mf.real and mf.real not in hint:
            kept = cache.kept(mf.display)
            if kept is not None:
                out.append((mf.display, kept))
                continue
        try:
            stat = mf.path.stat()
            if stat.st_size > limits.max_file_bytes:
                findings.append(
                    file_finding(
                        mf.display,
                        "yaml-limits",
                        f"file is larger than the {size_text(limits.max_file_bytes)} limit",
                    )
                )
                continue
            if cache is not None:
                unchanged = cache.by_stat(mf.display, stat)
                if unchanged is not None:
                    out.append((mf.display, unchanged))
                    continue
            data = mf.path.read_bytes()
        except OSError as exc:
            findings.append(file_finding(mf.display, "manifest-read", f"cannot read: {exc.strerror or exc}"))
            continue
        parsed = None
        if cache is not None:
            parsed = cache.get(mf.display, sha256_hex(data))
        if parsed is None:
            parsed = parse_file(mf.display, data, limits)
            if cache is not None:
                cache.put(mf.display, parsed)
        if cache is not None:
            cache.remember_stat(mf.display, stat, parsed)
        out.append((mf.display, parsed))
    return out, findings


_CREDENTIAL_MARKS = ("@", "?", "\\")
"""Characters a file needs for any of its values to carry credentials (user-info, a query string, or an escape
that spells one of them): see ``Fleet.credential_free_files`` (a file known without its text is never free)."""


def _credential_free(pf: ParsedFile) -> bool:
    return bool(pf.text) and not any(c in pf.text for c in _CREDENTIAL_MARKS)


def _fleet(
    groups: Mapping[str, dict[str, Any]],
    sources: dict[tuple[str, str], SourceRef],
    invalid: dict[tuple[str, str], SourceRef],
    credential_free: frozenset[str],
) -> Fleet:
    return Fleet(
        nodes=groups["Node"],
        cameras=groups["Camera"],
        instances=groups["DsInstance"],
        profiles=groups["InferenceProfile"],
        policies=groups["Policy"],
        sources=sources,
        invalid=invalid,
        credential_free_files=credential_free,
    )


def build_fleet(parsed: Sequence[tuple[str, ParsedFile]]) -> tuple[Fleet, list[Finding]]:
    """Group manifests by kind and name; a repeated kind/name is an error naming both places."""
    groups: dict[str, dict[str, Any]] = {kind: {} for kind in KIND_NAMES}
    sources: dict[tuple[str, str], SourceRef] = {}
    findings: list[Finding] = []
    invalid: dict[tuple[str, str], SourceRef] = {}
    for display, pf in parsed:
        for index, kind, name in pf.invalid:
            invalid.setdefault((kind, name), SourceRef(file=display, document=index))
        for index, manifest in pf.manifests:
            kind = manifest.kind
            name = manifest.metadata.name
            source = SourceRef(file=display, document=index)
            first = sources.get((kind, name))
            if first is not None:
                findings.append(
                    Finding(
                        severity=Severity.ERROR,
                        rule="duplicate-name",
                        message=f"metadata.name: {kind} {name!r} is defined more than once",
                        source=source.at("metadata", "name"),
                        notes=(Note(message="first defined here", source=first.at("metadata", "name")),),
                    )
                )
                continue
            sources[(kind, name)] = source
            groups[kind][name] = manifest
    fleet = _fleet(
        groups,
        sources,
        {key: ref for key, ref in invalid.items() if key not in sources},
        frozenset(display for display, pf in parsed if _credential_free(pf)),
    )
    return fleet, findings


@dataclass(frozen=True)
class Built:
    """The last fleet :func:`build_fleet_cached` built, from these files' parses."""

    files: dict[str, ParsedFile]
    fleet: Fleet
    findings: tuple[Finding, ...]
    base: Fleet | None = None
    """The fleet this one was built from by replacing documents (None: built in full)."""
    changed: dict[str, frozenset[str]] | None = None
    """Kind → the names of the documents replaced, added or removed since :attr:`base`."""


DELTA_LIMIT = 0.1
"""Above this share of files changed, the fleet is built again in full (as fast, and simpler)."""


def build_fleet_cached(
    parsed: Sequence[tuple[str, ParsedFile]],
    cache: ManifestCache | None,
    fresh: AbstractSet[str] | None = None,
) -> tuple[Fleet, list[Finding]]:
    """:func:`build_fleet`, or, with ``cache``, the last fleet with the documents of the changed files replaced:
    the other documents stay the very same objects at the same places, and the fleet itself is the last one when
    no file changed. A change that touches a name defined twice, or a set with documents that fail their schema,
    is built in full (which document wins, and what counts as defined, then depend on the whole set).
    ``fresh``: the only files that may differ from the last build's (the same files as then)."""
    files = dict(parsed)
    last = cache.built if cache is not None else None
    delta = _fleet_delta(last, files, fresh) if last is not None else None
    if delta is None:
        fleet, findings = build_fleet(parsed)
        if cache is not None:
            cache.built = Built(files, fleet, tuple(findings))
        return fleet, findings
    fleet, changed = delta
    if cache is not None and last is not None:
        cache.built = Built(files, fleet, (), last.fleet, changed)
    return fleet, []


def _fleet_delta(
    last: Built, files: dict[str, ParsedFile], fresh: AbstractSet[str] | None = None
) -> tuple[Fleet, dict[str, frozenset[str]]] | None:
    if last.findings or last.fleet.invalid:
        return None
    if fresh is not None and len(files) == len(last.files):
        changed = [display for display in fresh if last.files.get(display) is not files.get(display)]
        removed: AbstractSet[str] = set()
    else:
        changed = [display for display, pf in files.items() if last.files.get(display) is not pf]
        removed = last.files.keys() - files.keys()
    if not changed and not removed:
        return last.fleet, {}
    if len(changed) + len(removed) > max(20, DELTA_LIMIT * len(files)):
        return None
    old_fleet = last.fleet
    groups: dict[str, dict[str, Any]] = {
        "Node": dict(old_fleet.nodes),
        "Camera": dict(old_fleet.cameras),
        "DsInstance": dict(old_fleet.instances),
        "InferenceProfile": dict(old_fleet.profiles),
        "Policy": dict(old_fleet.policies),
    }
    sources = dict(old_fleet.sources)
    leaving: set[tuple[str, str]] = set()
    for display in [*changed, *removed]:
        old = last.files.get(display)
        if old is None:
            continue
        if old.invalid:
            return None
        for index, manifest in old.manifests:
            key = (manifest.kind, manifest.metadata.name)
            ref = sources.get(key)
            if ref is None or ref.file != display or ref.document != index:
                return None  # it was a repeat of a name defined elsewhere
            leaving.add(key)
    for display in changed:
        new = files[display]
        if new.invalid:
            return None
        for index, manifest in new.manifests:
            key = (manifest.kind, manifest.metadata.name)
            if key in sources and key not in leaving:
                return None  # defined elsewhere too: a duplicate, judged by a full build
            leaving.discard(key)
            groups[manifest.kind][manifest.metadata.name] = manifest  # in place when the name stays
            sources[key] = SourceRef(file=display, document=index)
    names: dict[str, set[str]] = {}
    for display in {*changed, *removed}:
        for parse in (last.files.get(display), files.get(display)):
            for _index, manifest in parse.manifests if parse is not None else ():
                names.setdefault(manifest.kind, set()).add(manifest.metadata.name)
    for kind, name in leaving:
        del groups[kind][name]
        del sources[(kind, name)]
    touched = {*changed, *removed}
    free = set(old_fleet.credential_free_files) - touched
    free.update(d for d in changed if _credential_free(files[d]))
    fleet = _fleet(groups, sources, {}, frozenset(free))
    return fleet, {kind: frozenset(found) for kind, found in names.items()}


def locate_findings(
    findings: Iterable[Finding],
    texts: dict[str, str],
    memo: Mapping[str, dict[tuple[int, tuple[PathItem, ...], bool], tuple[int, int]]] | None = None,
    located: dict[int, tuple[Finding, Finding]] | None = None,
    *,
    warnings: bool = True,
) -> list[Finding]:
    """Fill in line/column from the YAML text for findings that only have a source path; sort them.

    Locating parses the file again with the round-trip loader (slow); ``memo`` (per file, kept with an unchanged
    file's parse) remembers what was found, so the same warnings on unchanged files cost nothing next time.
    ``located`` (kept by a long-running caller) maps a finding object given again to its located copy: a finding
    is given again only while the documents it was found in are unchanged (an unchanged file's parse findings, a
    kept rule hit's finding: :class:`dsfleet.policies.engine.HitMemo`), so its place is too. ``warnings=False``:
    errors only (the warnings are left out: a caller that shows none, the coordinator, which stores and logs
    errors only)."""
    locators: dict[str, Locator] = {}

    def resolve(source: SourceRef | None, key: bool) -> Location | None:
        if source is None:
            return None
        text = texts.get(source.file)
        if text is None:
            return Location(file=source.file)
        known = memo.get(source.file) if memo is not None else None
        where = (source.document, tuple(source.path), key)
        found = known.get(where) if known is not None else None
        if found is None:
            locator = locators.get(source.file)
            if locator is None:
                locator = locators[source.file] = Locator(text)
            found = locator.locate(source.document, source.path, key=key)
            if known is not None:
                known[where] = found
        line, col = found
        return Location(file=source.file, line=line, column=col)

    out: list[Finding] = []
    fresh: dict[int, tuple[Finding, Finding]] = {}
    for f in findings:
        if not warnings and f.severity is not Severity.ERROR:
            continue
        if located is not None:
            known = located.get(id(f))
            if known is not None and known[0] is f:
                fresh[id(f)] = known
                out.append(known[1])
                continue
        key = f.rule in KEY_RULES
        location = f.location or resolve(f.source, key)
        notes = tuple(
            n if n.location is not None else n.model_copy(update={"location": resolve(n.source, key)})
            for n in f.notes
        )
        copy = f.model_copy(update={"location": location, "notes": notes})
        out.append(copy)
        if located is not None:
            fresh[id(f)] = (f, copy)
    if located is not None:  # what this call located, and nothing else (the rest may be gone)
        located.clear()
        located.update(fresh)
    out.sort(key=lambda f: (is_consequence(f), *f.sort_key()))
    return out


def load_manifests(
    paths: Sequence[str | os.PathLike[str]],
    limits: Limits = DEFAULT_LIMITS,
    cache: ManifestCache | None = None,
    run_policies: bool = True,
    hint: AbstractSet[str] | None = None,
) -> LoadedManifests:
    """Discover, parse, validate, check policies and locate every finding (``run_policies=False``: neither checked
    nor located; the caller checks the rules and locates everything at once). ``hint``: the real paths a file
    watcher saw change since the last load through ``cache`` (see :func:`discover` and :func:`read_files`); the
    caller vouches the watcher saw every change meanwhile (it loads without one from time to time)."""
    files, findings = discover(paths, limits.exclude, cache, hint)
    last = cache.views if cache is not None else None
    fresh: set[str] | None = None
    again: list[tuple[str, ParsedFile]] | None = None
    if hint is not None and cache is not None and last is not None and last.discovered is cache.discovered:
        # the same files as the last load (its walk was taken again): only the hinted ones are read, in place
        assert cache.discovered is not None
        named = [cache.discovered.by_real[path] for path in hint if path in cache.discovered.by_real]
        again, read_findings = read_files(named, limits, cache)
        if len(again) != len(named):
            again = (
                None  # one could not be read: the whole set is read, so it is left out as a full read does
            )
    if again is not None and last is not None:
        parsed = list(last.parsed.items())
        for display, pf in again:
            parsed[last.position[display]] = (display, pf)
        fresh = {display for display, _pf in again}
    else:
        parsed, read_findings = read_files(files, limits, cache, hint)
    findings.extend(read_findings)
    for _display_name, pf in parsed:
        findings.extend(pf.findings)
    fleet, dup_findings = build_fleet_cached(parsed, cache, fresh)
    findings.extend(dup_findings)
    if run_policies:
        from dsfleet.policies.engine import evaluate

        findings.extend(evaluate(fleet))
    views = _views(parsed, files, cache, fresh)
    return LoadedManifests(
        fleet=fleet,
        findings=locate_findings(findings, views.texts, views.locations) if run_policies else findings,
        files=list(views.names),
        digest=views.digest,
        texts=views.texts,
        locations=views.locations,
    )


@dataclass(frozen=True)
class Views:
    """What a load derives from every file's parse: texts, located places, the manifests hash (over sorted
    ``relative name \0 content hash`` lines). Kept by a :class:`ManifestCache` and updated for the files that
    changed (the texts and places are new dicts each load: a caller may keep the last ones)."""

    parsed: dict[str, ParsedFile]
    relative: dict[str, str]
    texts: dict[str, str]
    locations: dict[str, dict[tuple[int, tuple[PathItem, ...], bool], tuple[int, int]]]
    lines: dict[str, str]
    ordered: list[str]
    digest: str
    names: tuple[str, ...]
    discovered: object

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Where each file is in :attr:`parsed` (the order of the walk)."""
        return {display: i for i, display in enumerate(self.parsed)}


def _views(
    parsed: Sequence[tuple[str, ParsedFile]],
    files: Sequence[ManifestFile],
    cache: ManifestCache | None,
    fresh: AbstractSet[str] | None = None,
) -> Views:
    """``fresh``: the only files that may differ from the last load's (the same files as then)."""
    discovered = cache.discovered if cache is not None else None
    last = cache.views if cache is not None else None
    new = dict(parsed)
    if last is not None and last.discovered is discovered and discovered is not None:
        relative = last.relative
    else:
        relative = {mf.display: mf.relative or mf.display for mf in files}
    changed: list[str] = []
    removed: set[str] = set()
    if last is not None and relative is last.relative and fresh is not None:
        changed = [display for display in fresh if last.parsed.get(display) is not new.get(display)]
    elif last is not None and relative is last.relative:
        changed = [display for display, pf in new.items() if last.parsed.get(display) is not pf]
        removed = last.parsed.keys() - new.keys()
    if last is None or relative is not last.relative or len(changed) + len(removed) > max(20, len(new) // 10):
        lines = {display: f"{relative.get(display, display)}\0{pf.digest}" for display, pf in parsed}
        ordered = sorted(lines.values())
        views = Views(
            parsed=new,
            relative=relative,
            texts={display: pf.text for display, pf in parsed},
            locations={display: pf.locations for display, pf in parsed},
            lines=lines,
            ordered=ordered,
            digest=sha256_hex("\n".join(ordered)),
            names=tuple(display for display, _ in parsed),
            discovered=discovered,
        )
    else:
        texts, locations, lines = dict(last.texts), dict(last.locations), dict(last.lines)
        ordered = list(last.ordered)
        for display in [*changed, *removed]:
            line = lines.pop(display, None)
            if line is not None:
                del ordered[bisect.bisect_left(ordered, line)]
            texts.pop(display, None)
            locations.pop(display, None)
        for display in changed:
            pf = new[display]
            line = lines[display] = f"{relative.get(display, display)}\0{pf.digest}"
            bisect.insort(ordered, line)
            texts[display], locations[display] = pf.text, pf.locations
        same_names = not removed and all(display in last.parsed for display in changed)
        names = last.names if same_names else tuple(display for display, _ in parsed)
        digest = sha256_hex("\n".join(ordered))
        views = Views(new, relative, texts, locations, lines, ordered, digest, names, discovered)
        if same_names and "position" in last.__dict__:  # the same files in the same order
            views.__dict__["position"] = last.position  # (a cached property's value, as it caches it)
    if cache is not None:
        cache.views = views
    return views

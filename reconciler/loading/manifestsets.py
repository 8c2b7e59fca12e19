"""Load a manifest set: find files, parse them safely, validate every document, build the Fleet.

The set is judged as a whole: ``LoadedManifests.findings`` carries every error and warning with its file, line
and column; the caller decides (errors reject the revision). Parses are cached by content hash so a watch loop
re-reads only what changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from dsfleet.reconciler.loading.ignores import IGNORE_FILE, Pattern, compile_patterns, ignored
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

YAML_SUFFIXES = (".yaml", ".yml")
KEY_RULES = frozenset({RULE_UNKNOWN_FIELD, "yaml-duplicate-key", "duplicate-name"})


@dataclass(frozen=True)
class ManifestFile:
    path: Path
    display: str
    """The name used in messages (relative to the working directory when possible)."""
    relative: str = ""
    """The name relative to the path it was found under (the file's own name for a file given as such): what
    the manifests hash covers, so ``apply /x/fleet`` and ``apply ./`` from ``/x/fleet`` hash alike."""


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


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("../../") else str(path)


def _display_child(dir_display: str | None, path: Path) -> str:
    """``_display(path)`` for a file ``path`` directly in a directory whose ``os.path.relpath`` is ``dir_display``
    (``None``: none): one ``relpath`` per directory instead of one per file."""
    if dir_display is None:
        return str(path)
    rel = path.name if dir_display == "." else os.path.join(dir_display, path.name)
    return rel if not rel.startswith("../../") else str(path)


def _ignore_rules(
    root: Path, here: Path, rules: list[tuple[str, tuple[Pattern, ...]]], findings: list[Finding]
) -> None:
    """Add the patterns of ``here/.dsfleetignore`` (relative to ``here``) to ``rules``."""
    ignore = here / IGNORE_FILE
    if not ignore.is_file():
        return
    try:
        lines = ignore.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        findings.append(_file_finding(_display(ignore), "manifest-read", f"cannot read: {exc}"))
        return
    base = here.relative_to(root).as_posix()
    rules.append(("" if base == "." else base + "/", compile_patterns(lines)))


RACY_NS = 2_000_000_000
"""A file or directory changed this recently may change again within the same tick of the file system's clock
without its mtime moving, so its stat vouches for nothing yet (git's "racy" entries): it is looked at again next
time."""
UNTRUSTED = (-1, -1, -1)


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def _trusted(key: tuple[int, int, int] | None, now_ns: int) -> tuple[int, int, int] | None:
    return UNTRUSTED if key is not None and now_ns - key[0] < RACY_NS else key


@dataclass(frozen=True)
class Discovered:
    """What :func:`discover` found, and what it read to find it: every directory it listed and every
    ``.dsfleetignore`` it read, with their (mtime, inode, size) then. As long as none of those changed, the same
    walk finds the same files (a directory's mtime changes whenever a name in it is added, removed or renamed)."""

    key: tuple[Any, ...]
    files: tuple[ManifestFile, ...]
    findings: tuple[Finding, ...]
    read: tuple[tuple[str, tuple[int, int, int] | None], ...]

    def still_valid(self, key: tuple[Any, ...]) -> bool:
        return key == self.key and all(_stat_key(path) == stat for path, stat in self.read)


def discover(
    paths: Sequence[str | os.PathLike[str]], exclude: Sequence[str] = (), cache: ManifestCache | None = None
) -> tuple[list[ManifestFile], list[Finding]]:
    """Every ``*.yaml``/``*.yml`` under ``paths`` (sorted; dot-directories skipped; symlinks leaving a root refused;
    files matched by a ``.dsfleetignore`` (gitignore syntax) or an ``exclude`` pattern left out). With ``cache``,
    the last walk's result is taken when no directory it listed changed (one ``stat`` per directory)."""
    key = (tuple(os.fspath(p) for p in paths), tuple(exclude), os.getcwd())
    last = cache.discovered if cache is not None else None
    if last is not None and last.still_valid(key):
        return list(last.files), list(last.findings)
    read: list[str] = []
    files, findings = _discover(paths, exclude, read)
    if cache is not None:
        now = time.time_ns()
        stats = tuple((path, _trusted(_stat_key(path), now)) for path in read)
        cache.discovered = Discovered(key, tuple(files), tuple(findings), stats)
    return files, findings


def _discover(
    paths: Sequence[str | os.PathLike[str]], exclude: Sequence[str], read: list[str]
) -> tuple[list[ManifestFile], list[Finding]]:
    """:func:`discover`'s walk; ``read`` gets every directory listed and ignore file read."""
    excluded = compile_patterns(exclude)
    files: list[ManifestFile] = []
    findings: list[Finding] = []
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        read.append(str(root))  # the root itself: a path that appears, or a file given that is replaced
        if not root.exists():
            findings.append(_file_finding(str(root), "manifest-path", "no such file or directory"))
            continue
        if root.is_file():
            resolved = root.resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(ManifestFile(root, _display(root), root.name))
            continue
        real_root = root.resolve()
        rules: list[tuple[str, tuple[Pattern, ...]]] = []
        for dirpath, dirnames, filenames, links in _walk(str(root)):
            read.append(dirpath)
            here = Path(dirpath)
            if IGNORE_FILE in filenames:
                read.append(os.path.join(dirpath, IGNORE_FILE))
                _ignore_rules(root, here, rules, findings)
            scoped = [*rules, ("", excluded)]
            prefix = here.relative_to(root).as_posix()
            prefix = "" if prefix == "." else prefix + "/"
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not ignored(scoped, prefix + d, True)
            )
            filenames = [n for n in filenames if not ignored(scoped, prefix + n, False)]
            for d in list(dirnames):
                if d in links:
                    target = (here / d).resolve()
                    if not target.is_relative_to(real_root):
                        findings.append(
                            _file_finding(
                                _display(here / d),
                                "manifest-symlink",
                                "symlink points outside the manifests directory",
                            )
                        )
                        dirnames.remove(d)
            # One realpath and one relpath per directory: a file that is not a symlink resolves to its name in
            # the resolved directory, and its display name is its name in the directory's display name.
            real_here: Path | None = None
            dir_display: str | None = None
            for name in sorted(filenames):
                if name.startswith(".") or not name.endswith(YAML_SUFFIXES):
                    continue
                path = here / name
                if name in links:
                    resolved = path.resolve()
                    if not resolved.is_relative_to(real_root):
                        findings.append(
                            _file_finding(
                                _display(path),
                                "manifest-symlink",
                                "symlink points outside the manifests directory",
                            )
                        )
                        continue
                else:
                    if real_here is None:
                        # the walk never enters a symlinked directory: here's real path is the real root's
                        real_here = real_root / prefix if prefix else real_root
                        try:
                            dir_display = os.path.relpath(here)
                        except ValueError:
                            dir_display = None
                    resolved = real_here / name
                if resolved in seen:
                    continue
                seen.add(resolved)
                files.append(
                    ManifestFile(
                        path,
                        _display(path) if real_here is None else _display_child(dir_display, path),
                        prefix + name,
                    )
                )
    return files, findings


def _walk(top: str) -> Iterator[tuple[str, list[str], list[str], set[str]]]:
    """``os.walk(top, followlinks=False)`` (top-down; prune by editing the directory list) that also yields the
    names that are symlinks: one ``scandir`` per directory tells both, where ``islink`` would cost a system call
    per file (most of the time of ``discover`` on a fleet of a thousand directories). Unreadable directories are
    skipped, as ``os.walk`` does."""
    try:
        with os.scandir(top) as it:
            entries = list(it)
    except OSError:
        return
    dirs: list[str] = []
    files: list[str] = []
    links: set[str] = set()
    for entry in entries:
        try:
            is_dir = entry.is_dir()  # a symlink to a directory is listed as one, like os.walk
        except OSError:
            is_dir = False
        if entry.is_symlink():
            links.add(entry.name)
        (dirs if is_dir else files).append(entry.name)
    yield top, dirs, files, links
    for name in dirs:
        if name not in links:  # followlinks=False
            yield from _walk(os.path.join(top, name))


def _file_finding(file: str, rule: str, message: str, line: int = 0, column: int = 0) -> Finding:
    return Finding(
        severity=Severity.ERROR,
        rule=rule,
        message=message,
        source=SourceRef(file=file),
        location=Location(file=file, line=line, column=column),
    )


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
    files: Iterable[ManifestFile], limits: Limits = DEFAULT_LIMITS, cache: ManifestCache | None = None
) -> tuple[list[tuple[str, ParsedFile]], list[Finding]]:
    """Read and parse each file (through ``cache`` when given). Pure apart from the reads: how often the cyclic
    collector runs meanwhile is the process's policy (``dsfleet.reconciler.cli.main``), not the loader's."""
    out: list[tuple[str, ParsedFile]] = []
    findings: list[Finding] = []
    for mf in files:
        try:
            stat = mf.path.stat()
            if stat.st_size > limits.max_file_bytes:
                findings.append(
                    _file_finding(
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
            findings.append(_file_finding(mf.display, "manifest-read", f"cannot read: {exc.strerror or exc}"))
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
    fleet = Fleet(
        nodes=groups["Node"],
        cameras=groups["Camera"],
        instances=groups["DsInstance"],
        profiles=groups["InferenceProfile"],
        policies=groups["Policy"],
        sources=sources,
        invalid={key: ref for key, ref in invalid.items() if key not in sources},
        credential_free_files=frozenset(
            display for display, pf in parsed if pf.text and not any(c in pf.text for c in _CREDENTIAL_MARKS)
        ),
    )
    return fleet, findings


def locate_findings(
    findings: Iterable[Finding],
    texts: dict[str, str],
    memo: Mapping[str, dict[tuple[int, tuple[PathItem, ...], bool], tuple[int, int]]] | None = None,
    located: dict[int, tuple[Finding, Finding]] | None = None,
) -> list[Finding]:
    """Fill in line/column from the YAML text for findings that only have a source path; sort them.

    Locating parses the file again with the round-trip loader (slow); ``memo`` (per file, kept with an unchanged
    file's parse) remembers what was found, so the same warnings on unchanged files cost nothing next time.
    ``located`` (kept by a long-running caller) maps a finding object given again to its located copy: a finding
    is given again only while the documents it was found in are unchanged (an unchanged file's parse findings, a
    kept rule hit's finding: :class:`dsfleet.policies.engine.HitMemo`), so its place is too."""
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
) -> LoadedManifests:
    """Discover, parse, validate, check policies and locate every finding (``run_policies=False``: neither checked
    nor located; the caller checks the rules and locates everything at once)."""
    files, findings = discover(paths, limits.exclude, cache)
    parsed, read_findings = read_files(files, limits, cache)
    findings.extend(read_findings)
    for _display_name, pf in parsed:
        findings.extend(pf.findings)
    fleet, dup_findings = build_fleet(parsed)
    findings.extend(dup_findings)
    if run_policies:
        from dsfleet.policies.engine import evaluate

        findings.extend(evaluate(fleet))
    texts = {display: pf.text for display, pf in parsed}
    memo = {display: pf.locations for display, pf in parsed}
    relative = {mf.display: mf.relative or mf.display for mf in files}
    digest = sha256_hex(
        "\n".join(sorted(f"{relative.get(display, display)}\0{pf.digest}" for display, pf in parsed))
    )
    return LoadedManifests(
        fleet=fleet,
        findings=locate_findings(findings, texts, memo) if run_policies else findings,
        files=[display for display, _ in parsed],
        digest=digest,
        texts=texts,
        locations=memo,
    )

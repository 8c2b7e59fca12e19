"""Findings: errors and warnings about manifests, as data.

A finding points into the manifests in two ways: ``source`` (file, document index, path of keys inside the
document) is what pure code knows; ``location`` (file, line, column) is filled in by the loader, which
resolves the path against the YAML text only for files that have findings.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

PathItem = str | int
YamlPath = tuple[PathItem, ...]


INVALID_TARGET = "is defined in an invalid document, see above"
"""How a rule says a reference failed because its target failed its schema: such findings are consequences,
printed after the root causes."""


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Location(BaseModel):
    """A 1-based line and column in a file (the path as the user gave it, relative when possible)."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


class SourceRef(BaseModel):
    """Where a value came from: a file, the index of the YAML document in it, and the key path inside."""

    model_config = ConfigDict(frozen=True)

    file: str
    document: int = 0
    path: YamlPath = ()

    def at(self, *path: PathItem) -> SourceRef:
        return SourceRef(file=self.file, document=self.document, path=self.path + tuple(path))


class Note(BaseModel):
    model_config = ConfigDict(frozen=True)

    message: str
    source: SourceRef | None = None
    location: Location | None = None


class Finding(BaseModel):
    """One error or warning. ``message`` never contains the offending input value verbatim."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    rule: str
    message: str
    source: SourceRef | None = None
    location: Location | None = None
    notes: tuple[Note, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        if loc is not None:
            return (loc.file, loc.line, loc.column, self.rule, self.message)
        file = self.source.file if self.source else ""
        return (file, 0, 0, self.rule, self.message)


def format_path(path: YamlPath) -> str:
    """``("spec", "cameras", 2, "url")`` → ``spec.cameras[2].url``."""
    out = ""
    for item in path:
        if isinstance(item, int):
            out += f"[{item}]"
        elif out:
            out += f".{item}"
        else:
            out = item
    return out


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 error``, ``2 errors``, ``0 policies`` (``many``: the plural when it is not ``word`` + s): every count
    dsfleet prints goes through it."""
    return f"{n} {word if n == 1 else (many or word + 's')}"

"""The version of an object read through the API (pure): the digest of its own document's text, so a change
of the object (from the API or from git) changes it, and a change of another object in the same file does not.
Sent as a strong ``ETag``; an update's ``If-Match`` must carry it."""

from __future__ import annotations

from dsfleet.schemas.hashing import sha256_hex

__all__ = ["etag_matches", "object_version", "quoted"]


def object_version(document_text: str) -> str:
    """24 hex digits of the sha256 of the document's text (its separator line excluded)."""
    return sha256_hex(document_text.encode("utf-8"))[:24]


def quoted(version: str) -> str:
    return f'"{version}"'


def etag_matches(if_match: str, version: str) -> bool:
    """``If-Match`` (one or more entity tags, ``*``, weak ones never match) against the object's version."""
    return any(tag == "*" or tag == quoted(version) for tag in (part.strip() for part in if_match.split(",")))

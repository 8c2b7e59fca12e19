"""The secret placeholder syntax shared by the coordinator (writes it) and the agent (fills it in), and the
checks that keep credentials out of manifests.

A rendered camera URL carries ``${secret:<ref>}`` as its user-info, e.g. ``rtsp://${secret:cam-gate}@10.0.0.5/main``;
the agent replaces it with the percent-encoded ``username:password`` from its local secret store.

A value that comes whole from a secret (a broker connection string: ``msg-broker-conn-str: {secretRef: iot}``)
renders as ``${secret:<ref>:<field>}`` (:data:`FIELD_PLACEHOLDER_RE`), ``<field>`` one of :data:`SECRET_FIELDS`;
the agent replaces it with that field of the secret, verbatim (not percent-encoded), escaped for the file's
syntax (GLib key file, JSON). ``${secret:<ref>}`` keeps its user-info meaning.

A credential may hide in three places of a plain string: a URL's user-info (``rtsp://user:pass@host``), a URL's
query string (``?user=admin&password=…``, see :data:`SECRET_QUERY_KEYS`), or the user-info of a ``host:port``
connection string (``user:pass@broker:9092``). An environment variable whose name looks secret
(:func:`secret_env_name`) must take its value from a ``secretRef``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

PLACEHOLDER_RE = re.compile(r"\$\{secret:([a-z0-9]([-a-z0-9]*[a-z0-9])?)\}")
"""``${secret:<ref>}``: a URL's user-info (``quote(username):quote(password)``)."""
SECRET_FIELDS = ("username", "password")
FIELD_PLACEHOLDER_RE = re.compile(r"\$\{secret:([a-z0-9]([-a-z0-9]*[a-z0-9])?):(username|password)\}")
"""``${secret:<ref>:<field>}``: one field of a secret, verbatim (a connection string kept whole in it)."""
ANY_PLACEHOLDER_RE = re.compile(r"\$\{secret:([a-z0-9]([-a-z0-9]*[a-z0-9])?)(?::(username|password))?\}")
"""Either form: group 1 the ref, group 3 the field (None for user-info)."""

SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "pass", "token", "api_key", "apikey", "secret", "auth"}
)
"""Query parameter names (any case, ``-`` = ``_``) that carry a credential; also any name containing one of
:data:`_SECRET_WORDS`."""
_SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential", "private_key")
SECRET_ENV_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "CREDENTIAL", "PRIVATE_KEY")
"""An environment variable whose upper-cased name contains one of these must come from a ``secretRef``."""


def secret_placeholder(ref: str) -> str:
    return "${secret:" + ref + "}"


def secret_field_placeholder(ref: str, field: str = "password") -> str:
    """``${secret:<ref>:<field>}``: the agent puts that field of the secret here, verbatim."""
    if field not in SECRET_FIELDS:
        raise ValueError(f"secret field must be one of {', '.join(SECRET_FIELDS)}")
    return "${secret:" + ref + ":" + field + "}"


def url_with_placeholder(url: str, ref: str | None) -> str:
    """Insert the placeholder for ``ref`` as the user-info of ``url`` (which must carry none)."""
    if not ref:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{scheme}://{secret_placeholder(ref)}@{rest}"


def secret_query_key(name: str) -> bool:
    """True for a query parameter name that carries a credential (``password``, ``pwd``, ``Api-Key``, …)."""
    key = unquote_plus(name).strip().lower().replace("-", "_")
    return key in SECRET_QUERY_KEYS or any(word in key for word in _SECRET_WORDS)


def query_has_credentials(text: str) -> bool:
    """True when ``text`` has a query string (``?a=b&c=d``, also ``;``-separated) with a non-empty value under a
    credential-like name; a ``${secret:…}`` placeholder is not a credential."""
    _head, sep, query = text.partition("?")
    if not sep:
        return False
    query = query.partition("#")[0]
    for pair in re.split(r"[&;]", query):
        name, eq, value = pair.partition("=")
        if (
            eq
            and value.strip()
            and secret_query_key(name)
            and not PLACEHOLDER_RE.fullmatch(unquote_plus(value))
        ):
            return True
    return False


def _userinfo_has_credentials(url: str) -> bool:
    if "@" not in url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.netloc:
        return False
    userinfo, at, _host = parts.netloc.rpartition("@")
    if not at:
        return False
    return bool(userinfo) and not PLACEHOLDER_RE.fullmatch(userinfo)


def url_has_credentials(url: str) -> bool:
    """True when ``url`` carries a user name or password in its authority (``user:pass@host``) or a credential in
    its query string (``?password=…``)."""
    return _userinfo_has_credentials(url) or query_has_credentials(url)


def connection_has_credentials(value: str) -> bool:
    """A comma-separated list of ``host:port`` or URLs (Kafka bootstrap servers, a broker connection string):
    True when any entry carries user-info or a credential in a query string."""
    for part in value.split(","):
        part = part.strip()
        if "://" in part:
            if url_has_credentials(part):
                return True
            continue
        authority = part.split("/", 1)[0].split("?", 1)[0]
        userinfo, at, _host = authority.rpartition("@")
        if at and userinfo and not PLACEHOLDER_RE.fullmatch(userinfo):
            return True
        if query_has_credentials(part):
            return True
    return False


def text_has_credentials(value: str) -> bool:
    """Any string setting: a URL (anything with ``://``) or a connection string with credentials."""
    if "://" in value:
        return any(url_has_credentials(p.strip()) for p in value.split(","))
    return query_has_credentials(value)


_BROKER_USERINFO = re.compile(r"^[^;/@]*://[^/@]*:[^/@]*@|^[^;/]*:[^;/]*@")
"""``scheme://user:password@host`` or ``user:password@host`` at the start of a broker connection string."""
_BROKER_SECRET_WORDS = ("accesskey", "sharedaccess", "signature")
"""Names in ``name=value`` parts of broker connection strings that carry a credential (Azure IoT Hub's
``SharedAccessKey=…``, ``SharedAccessSignature=…``), beside those of :func:`secret_query_key`."""


def broker_connection_has_credentials(value: str) -> bool:
    """A deepstream-app broker connection string (``msg-broker-conn-str``, ``conn-str``: ``host;port``, a URL, an
    Azure IoT ``HostName=…;DeviceId=…;SharedAccessKey=…``, a Kafka ``host:port`` list): True when it carries a
    credential anywhere, user-info or a secret-looking ``name=value`` part, or says ``password``."""
    if connection_has_credentials(value) or text_has_credentials(value) or _BROKER_USERINFO.search(value):
        return True
    if "password" in value.lower():
        return True
    for part in re.split(r"[;&,?]", value):
        name, eq, secret = part.partition("=")
        lowered = name.strip().lower().replace("-", "").replace("_", "")
        if (
            eq
            and secret.strip()
            and (secret_query_key(name) or any(w in lowered for w in _BROKER_SECRET_WORDS))
        ):
            return True
    return False


def secret_env_name(name: str) -> bool:
    """True for an environment variable name that looks secret (``DB_PASSWORD``, ``API_TOKEN``, …)."""
    upper = name.upper()
    return any(word in upper for word in SECRET_ENV_WORDS)

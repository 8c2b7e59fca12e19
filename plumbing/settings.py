"""Settings of every section: ``settings.toml`` (or ``DSFLEET_CONFIG``) < ``DSFLEET_*`` environment < flags.

One model per section (``[coordinator]``, ``[agent]``, ``[kafka]``, ``[api]``); :func:`load_settings` is the one
loader (pydantic-settings reads the nested environment variables):

- the file: ``settings.toml`` in the working directory, or the file ``DSFLEET_CONFIG`` names (a missing default
  file means defaults; a missing named file is an error). An unknown section or key is an error naming the
  file, the line and the nearest valid name (``settings.toml:1:1: error: unknown section [coordinatr]; did you
  mean [coordinator]?``); so is invalid TOML or an invalid value.
- the environment: ``DSFLEET_<SECTION>_<KEY>`` (``DSFLEET_COORDINATOR_DB``, ``DSFLEET_KAFKA_BOOTSTRAP_SERVERS``,
  ``DSFLEET_AGENT_NODE_NAME``) or nested with ``__`` (``DSFLEET_KAFKA__TOPIC_PREFIX``). Other ``DSFLEET_*``
  variables (``DSFLEET_CONFIG``, ``DSFLEET_DEBUG``, ``DSFLEET_SECRET_*``) are not settings and are ignored.
- flags: the caller passes them as ``overrides`` (``{"coordinator": {"db": url}}``; ``None`` values are unset).

``[kafka]`` passes librdkafka keys (anything with a dot: ``security.protocol``, ``sasl.mechanism``,
``ssl.ca.location``, …; quoted or not) through unchanged; ``sasl_password_file`` reads the SASL password from a
file so it never sits in the settings file (:meth:`KafkaSettings.client_config`).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from dsfleet.schemas.errors import PermanentError

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_FILE",
    "ENV_PREFIX",
    "AdmissionSettings",
    "AgentSettings",
    "ApiSettings",
    "CoordinatorSettings",
    "KafkaSettings",
    "Settings",
    "SettingsError",
    "load_settings",
]

DEFAULT_DB_URL = "sqlite:///./.dsfleet/state.db"
DEFAULT_FILE = "settings.toml"
ENV_PREFIX = "DSFLEET_"


class SettingsError(PermanentError):
    """Bad settings; the message names the place (``FILE:LINE:COL: error: …`` or the environment variable)."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CoordinatorSettings(_Section):
    db: str = DEFAULT_DB_URL
    manifests: Path | None = None
    sync: Literal["auto", "manual"] | None = None
    """None: the fleet's Policy decides (default auto)."""
    debounce_ms: int = Field(300, ge=0, le=60_000)
    heartbeat_misses: int = Field(3, ge=1)
    """A node is offline after this many missed heartbeats."""
    resync_grace_seconds: float = Field(15.0, gt=0)
    """A node behind its desired generation this long gets its config re-published (anti-entropy)."""
    retire_after_seconds: float = Field(600.0, gt=0)
    """A node removed from the manifests is forgotten once its agent reports its instances gone, or this long after
    its removal when the agent never does (``dsfleet nodes forget NAME``: at once)."""
    directory_resync_seconds: float = Field(30.0, gt=0)
    """The manifests directory is read again this often even without a file event (a missed event, a commit that
    changed no file, a rollback pin to re-check)."""
    standby: bool = False
    """Wait for the store's coordinator lock instead of failing when another coordinator holds it, and take over
    when that one stops or dies (a standby: docs/deploying/ha.md)."""
    takeover_after_seconds: float = Field(30.0, gt=0)
    """A standby on PostgreSQL takes over from a running coordinator whose heartbeat is this old (hung): it ends
    that one's database sessions, and the leadership fence refuses its later writes."""
    handover_timeout_seconds: float = Field(300.0, gt=0)
    """A camera moved to another node leaves its old node once the new one runs it, or this long after the change
    when the new node does not say (down, silent); never while the new node says it cannot take it."""
    max_file_bytes: int = Field(16 * 1024 * 1024, ge=1)
    max_depth: int = Field(64, ge=1)
    max_aliases: int = Field(100, ge=1)
    http: str | None = None
    """HOST:PORT of the HTTP API, None: no API."""
    events_max_age_days: float = Field(7.0, gt=0)
    """Events older than this are deleted (once a minute)."""
    events_max_rows: int = Field(100_000, ge=100)
    """At most this many events are kept (the newest)."""
    signing_key: Path | None = None
    """The coordinator's private key, which signs every record it writes (``dsfleet keys init``); None:
    ``keys/coordinator.key`` next to the SQLite store (``./.dsfleet/keys/coordinator.key`` for PostgreSQL)."""
    operator_keys: tuple[str, ...] = ()
    """Public keys (``ed25519:<base64>``) whose UpdateConfig and Refresh requests on the bus are obeyed: a
    ``dsfleet serve`` of its own process (``dsfleet keys show --api``), an operator's. A comma-separated list in
    the environment."""
    operator_keys_file: Path | None = None
    """A file of more such keys, one a line (``#`` comments)."""

    @field_validator("operator_keys", mode="before")
    @classmethod
    def _operator_keys_list(cls, value: object) -> object:
        return _key_list(value)


class AdmissionSettings(_Section):
    """``[agent.admission]``: what this host lets a desired config run, whoever signed it (the host's own
    settings, never the repository's). A config that asks for more is refused for that instance as a whole: its
    last good container keeps running and the instance reports ``AdmissionDenied`` with the rule it broke
    (:mod:`dsfleet.agent.admission`, docs/operating/agent.md). Whatever these say, a bind of ``/``, of a
    container engine's socket or of the agent's state directory is always refused."""

    images: tuple[str, ...] = ("*",)
    """Image references allowed (globs, ``nvcr.io/nvidia/deepstream:*``, ``registry.local/*``,
    ``*@sha256:<digest>``); matched against the reference as written and as Docker completes it
    (``docker.io/library/…:latest``). Default: any image."""
    require_digest: bool = False
    """Only images pinned by digest (``…@sha256:…``)."""
    privileged: bool = False
    """Whether a container may run privileged."""
    bind_sources: tuple[str, ...] = ()
    """Host paths (absolute; each with everything under it) that bind mounts may use: model and media
    directories. Default: none (the agent's own configs and secrets mounts need no entry)."""
    devices: tuple[str, ...] = ()
    """Host devices a container may be given (globs: ``/dev/video*`` for USB cameras). GPUs come through the
    NVIDIA device request and need no entry. Default: none."""
    security_opt: tuple[str, ...] = ("no-new-privileges*", "apparmor=*", "apparmor:*", "label=*", "label:*")
    """Security options allowed (globs). The unconfined forms (``seccomp=unconfined``, ``apparmor=unconfined``,
    ``label=disable``, ``systempaths=unconfined``) are admitted only when listed word for word; a custom seccomp
    profile only when listed."""
    network_modes: tuple[str, ...] = ("host", "bridge", "none")
    """Network modes allowed (globs; ``container:*`` joins another container's namespace). ``host`` is allowed
    by default: DeepStream apps publish to brokers on the host's loopback and serve RTSP out and REST on host
    ports; remove it on hosts whose instances need none of that."""
    ipc_modes: tuple[str, ...] = ("private", "shareable", "none")
    """IPC modes allowed (an unset mode is Docker's default). Default: never ``host``."""

    @model_validator(mode="after")
    def _absolute_sources(self) -> AdmissionSettings:
        for path in self.bind_sources:
            if not path.startswith("/"):
                raise ValueError(f"bind_sources: {path!r} is not an absolute path")
        return self


class AgentSettings(_Section):
    node_name: str | None = None
    """None: the hostname, or the name the coordinator gives."""
    state_dir: Path = Path(".dsfleet/agent")
    runtime: Literal["docker"] = "docker"
    docker_url: str | None = None
    """None: the environment's Docker (DOCKER_HOST, else the local socket)."""
    heartbeat_seconds: float = Field(5.0, gt=0)
    resync_seconds: float = Field(30.0, gt=0)
    self_heal: bool = True
    fleet_id: str | None = Field(None, max_length=64)
    """Bind the agent to this fleet (the store's id) up front; None: the fleet of the first config it accepts."""
    image_pull: Literal["missing", "never"] = "missing"
    """``missing``: pull an absent image when its registry answers; ``never``: an absent image is ``ImageNotFound``."""
    admission: AdmissionSettings = AdmissionSettings()
    """``[agent.admission]``: what this host lets a config run."""
    trusted_keys: tuple[str, ...] = ()
    """The coordinator's public keys (``ed25519:<base64>``, ``dsfleet keys show``) this agent believes; several at
    once while the coordinator's key rotates. None given: every config is refused. A comma-separated list in the
    environment."""
    trusted_keys_file: Path | None = None
    """A file of more such keys, one a line (``#`` comments)."""
    log_request_keys: tuple[str, ...] = ()
    """Keys that may ask for instance logs and nothing else (a ``dsfleet serve`` run as its own process)."""
    insecure_accept_unsigned: bool = False
    """Accept unsigned configs and commands from anyone who can write to the broker. For labs only."""
    enroll_token: str | None = Field(None, repr=False)
    """A one-time enrollment token (``dsfleet nodes token create``): the coordinator enrolls this agent's key on
    its first announce. Without one, an operator approves the key (``dsfleet nodes approve NAME``)."""
    enroll_token_file: Path | None = None

    @field_validator("trusted_keys", "log_request_keys", mode="before")
    @classmethod
    def _keys_list(cls, value: object) -> object:
        return _key_list(value)


def _key_list(value: object) -> object:
    """Public keys given as one string (the environment): separated by commas or white space."""
    if isinstance(value, str):
        return tuple(part for part in value.replace(",", " ").split() if part)
    return value


class KafkaSettings(BaseModel):
    """``[kafka]``: dsfleet's own keys, plus librdkafka keys (with a dot) kept as they are."""

    model_config = ConfigDict(frozen=True, extra="allow")

    bootstrap_servers: str | None = None
    """HOST:PORT[,HOST:PORT]; None: no broker configured."""
    topic_prefix: str = ""
    partitions: int = Field(12, ge=1)
    replication_factor: int = Field(1, ge=1)
    max_message_bytes: int = Field(1_000_000, ge=1024)
    sasl_password_file: Path | None = None
    fetch_wait_max_ms: int = Field(100, ge=0)

    @model_validator(mode="after")
    def _only_librdkafka_extras(self) -> KafkaSettings:
        for key in self.model_extra or {}:
            if "." not in key:
                raise ValueError(f"unknown key {key!r} (librdkafka keys contain a dot)")
        return self

    def passthrough(self) -> dict[str, str]:
        """The librdkafka keys of ``[kafka]`` as strings (booleans as ``true``/``false``)."""
        return {key: _librdkafka_text(value) for key, value in sorted((self.model_extra or {}).items())}

    def client_config(self) -> dict[str, str]:
        """The librdkafka client config: ``bootstrap.servers``, the pass-through keys, and ``sasl.password`` read
        from ``sasl_password_file`` (one trailing newline dropped). Raises :class:`SettingsError` when there is no
        broker or the password file cannot be read."""
        if not self.bootstrap_servers:
            raise SettingsError("[kafka] bootstrap_servers is not set (DSFLEET_KAFKA_BOOTSTRAP_SERVERS)")
        config = {"bootstrap.servers": self.bootstrap_servers, **self.passthrough()}
        if self.sasl_password_file is not None:
            try:
                text = self.sasl_password_file.read_text(encoding="utf-8")
            except OSError as err:
                raise SettingsError(
                    f"{self.sasl_password_file}: error: [kafka] sasl_password_file: cannot read "
                    f"({err.strerror or type(err).__name__})"
                ) from err
            config["sasl.password"] = text.removesuffix("\n").removesuffix("\r")
        return config


class ApiSettings(_Section):
    token: str | None = Field(None, repr=False)
    token_file: Path | None = None
    tokens_file: Path | None = None
    """More API tokens, with names and roles: ``name:role:sha256`` lines (role viewer, operator or admin; the
    token's sha256 in hex). The ``token`` above is an admin named ``admin``."""
    edits_push_remote: str | None = None
    """Push each commit of an API edit to this git remote (a configured remote's name); None: no push."""
    edits_push_branch: str | None = None
    """The branch pushed to (default: the manifests' current branch)."""
    read_requires_token: bool | Literal["auto"] = "auto"
    """``auto``: reads need the token unless the API listens on loopback only."""
    webhook_secret: str | None = Field(None, repr=False)
    """The shared secret of git push webhooks (GitHub/Gitea HMAC key, GitLab token)."""
    webhook_secret_file: Path | None = None
    allowed_hosts: tuple[str, ...] | None = None
    """Names the ``Host`` header may carry (``*``: any); None: the bound address, ``localhost``, ``127.0.0.1`` and
    ``::1`` on loopback, any beyond it. A comma-separated list in the environment."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """A larger request body is answered 413 before it is read."""
    webhook_max_body_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """A connection that has not sent a request's headers this long after it opened (or after its last answer)
    is closed."""
    body_timeout_seconds: float = Field(30.0, gt=0, le=600)
    """A request whose body has not arrived this long after its headers is answered 408."""
    keep_alive_seconds: int = Field(5, ge=1, le=300)
    max_connections: int = Field(1000, ge=8)
    """Open connections at most (and at most half the process's file descriptors): past it, the oldest connection
    that has not sent a request is closed."""
    max_requests: int = Field(64, ge=1)
    """Requests handled at once; more are answered 503 with ``Retry-After``."""
    camera_metrics: bool = True
    """``/metrics`` has per-camera series (``dsfleet_camera_up``, ``dsfleet_camera_fps``, …: one series per camera
    of each instance served by DeepStream's stream REST API); false for very large fleets."""

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class Settings(BaseModel):
    """Every section. ``Settings()`` gives the defaults (it reads nothing implicitly); :func:`load_settings` is the
    one place that reads file, environment and flags."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    coordinator: CoordinatorSettings = CoordinatorSettings()
    agent: AgentSettings = AgentSettings()
    kafka: KafkaSettings = KafkaSettings()
    api: ApiSettings = ApiSettings()

    SECTIONS: ClassVar[dict[str, type[BaseModel]]] = {
        "coordinator": CoordinatorSettings,
        "agent": AgentSettings,
        "kafka": KafkaSettings,
        "api": ApiSettings,
    }


# --------------------------------------------------------------------------------------------------- loading


def load_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """File < environment < ``overrides`` (the caller's flags), validated as a whole.

    ``path`` None: ``DSFLEET_CONFIG`` if set, else ``settings.toml`` in the working directory (missing: defaults).
    ``environ`` None: ``os.environ``. Raises :class:`SettingsError` (a ``PermanentError``) naming the place."""
    env = dict(os.environ if environ is None else environ)
    named = path if path is not None else env.get(f"{ENV_PREFIX}CONFIG") or None
    file = Path(named) if named is not None else Path(DEFAULT_FILE)
    document, lines = _read_file(file, required=named is not None)
    layers: list[tuple[str, dict[str, dict[str, Any]]]] = [("file", document)]
    from_env, env_names = _from_environment(env)
    layers.append(("environment", from_env))
    layers.append(("flags", _from_overrides(overrides or {})))
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[tuple[str, str], str] = {}
    for what, layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
            for key in values:
                origin[(section, key)] = (
                    env_names.get((section, key), what) if what == "environment" else what
                )
    try:
        return Settings.model_validate(merged)
    except ValidationError as err:
        raise _validation_error(err, file, lines, origin) from None


def _read_file(
    file: Path, *, required: bool
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, ...], tuple[int, int]]]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise SettingsError(f"{file}: error: no such settings file") from None
        return {}, {}
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise SettingsError(f"{file}: error: cannot read the settings file ({reason})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if found:
            where = f"{file}:{found.group(1)}:{found.group(2)}"
            message = message[: found.start()]
        else:
            where = str(file)
        raise SettingsError(f"{where}: error: invalid TOML: {message}") from None
    lines = _key_lines(text)
    document: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        model = Settings.SECTIONS.get(section)
        if model is None:
            line = _at(lines, section)
            if not isinstance(values, dict):
                raise SettingsError(f"{file}:{line}: error: key {section!r} outside a section")
            hint = _nearest(section, list(Settings.SECTIONS))
            did_you_mean = f"; did you mean [{hint}]?" if hint else ""
            raise SettingsError(f"{file}:{line}: error: unknown section [{section}]{did_you_mean}")
        if not isinstance(values, dict):
            raise SettingsError(f"{file}:{_at(lines, section)}: error: {section} must be a [{section}] table")
        flat = _flatten(values) if model is KafkaSettings else values
        for key in flat:
            if key in model.model_fields or (model is KafkaSettings and "." in key):
                continue
            hint = _nearest(key, list(model.model_fields))
            did_you_mean = f"; did you mean {hint}?" if hint else ""
            where = f"{file}:{_at(lines, section, key)}"
            raise SettingsError(f"{where}: error: [{section}] unknown key {key!r}{did_you_mean}")
        document[section] = dict(flat)
    return document, lines


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``sasl.mechanism = "PLAIN"`` unquoted is a nested table in TOML: librdkafka wants the dotted key."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


_HEADER = re.compile(r"^\s*\[(?!\[)\s*(?P<name>[^\]]+?)\s*\]")
_KEY = re.compile(
    r"""^\s*(?P<key>(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)
_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


def _parts(dotted: str) -> list[str]:
    return [a or b or c for a, b, c in _PART.findall(dotted)]


def _key_lines(text: str) -> dict[tuple[str, ...], tuple[int, int]]:
    """Where each section header and key is: ``(section,)`` and ``(section, dotted key)`` → 1-based line, column."""
    out: dict[tuple[str, ...], tuple[int, int]] = {}
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        at = (number, len(line) - len(line.lstrip()) + 1)
        header = _HEADER.match(line)
        if header:
            table = _parts(header.group("name"))
            if table:
                out.setdefault((table[0],), at)
            continue
        key = _KEY.match(line)
        if key:
            path = table + _parts(key.group("key"))
            if len(path) == 1:
                out.setdefault((path[0],), at)
            elif path:
                out.setdefault((path[0], ".".join(path[1:])), at)
    return out


def _at(lines: Mapping[tuple[str, ...], tuple[int, int]], section: str, key: str | None = None) -> str:
    """``LINE:COL`` of a key (else of its section's header, else 1:1)."""
    line, column = lines.get((section, key) if key else (section,)) or lines.get((section,)) or (1, 1)
    return f"{line}:{column}"


def _nearest(name: str, choices: list[str]) -> str | None:
    found = get_close_matches(name, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _nested_environment(nested: Mapping[str, str]) -> dict[str, Any]:
    """``DSFLEET_<SECTION>__<KEY>`` variables through pydantic-settings' environment source (prefix ``DSFLEET_``,
    nested ``__``, JSON for complex values) over the given mapping. Imported only when such a variable is set:
    importing it is a tenth of a second of every command's start."""
    from pydantic_settings import BaseSettings, EnvSettingsSource

    shape = create_model(  # type: ignore[call-overload]
        "EnvironmentShape",
        __base__=BaseSettings,
        **{name: (model, model()) for name, model in Settings.SECTIONS.items()},
    )
    lowered = {k.lower(): _json_list(k, v) for k, v in nested.items()}

    class MappingEnvSource(EnvSettingsSource):
        def _load_env_vars(self) -> Mapping[str, str | None]:
            return lowered

    source = MappingEnvSource(shape, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter="__")
    return dict(source())


def _json_list(name: str, value: str) -> str:
    """A list setting given as ``a,b`` in a nested variable, as the JSON list pydantic-settings
    reads there (``["a","b"]`` is kept as it is)."""
    if value.lstrip().startswith("["):
        return value
    parts = name.lower()[len(ENV_PREFIX) :].split("__")
    model: Any = Settings.SECTIONS.get(parts[0])
    field = None
    for part in parts[1:]:
        field = (
            model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if field is None:
            return value
        model = field.annotation
    if field is None or not _is_list(field.annotation):
        return value
    return json.dumps([p.strip() for p in value.split(",") if p.strip()])


def _is_list(annotation: Any) -> bool:
    """A tuple or list, or one of them or None."""
    return get_origin(annotation) in (tuple, list) or any(
        get_origin(a) in (tuple, list) for a in get_args(annotation)
    )


def _from_environment(
    environ: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    """Settings from ``DSFLEET_*`` variables, and which variable set each (for messages)."""
    out: dict[str, dict[str, Any]] = {}
    names: dict[tuple[str, str], str] = {}
    prefix = ENV_PREFIX.lower()
    for name, value in environ.items():  # the flat form: DSFLEET_<SECTION>_<KEY>
        lowered = name.lower()
        if not lowered.startswith(prefix) or "__" in lowered:
            continue
        rest = lowered[len(prefix) :]
        for section, model in Settings.SECTIONS.items():
            key = rest.removeprefix(section + "_")
            if key != rest and key in model.model_fields:
                out.setdefault(section, {})[key] = value
                names[(section, key)] = name
    nested = {k: v for k, v in environ.items() if "__" in k and k.upper().startswith(ENV_PREFIX)}
    if nested:
        try:
            values = _nested_environment(nested)
        except Exception as err:  # pydantic-settings: a complex value that is not JSON
            raise SettingsError(f"environment: error: {ENV_PREFIX}*__*: {err}") from None
        for section, section_values in values.items():
            if section in Settings.SECTIONS and isinstance(section_values, dict):
                out.setdefault(section, {}).update(section_values)
                for key in section_values:
                    names[(section, key)] = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
    return out, names


def _from_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, values in overrides.items():
        if section not in Settings.SECTIONS:
            raise ValueError(f"unknown settings section {section!r}")
        kept = {k: v for k, v in values.items() if v is not None}
        if kept:
            out[section] = kept
    return out


_MESSAGES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "path_type": "must be a path",
    "extra_forbidden": "unknown key",
    "tuple_type": "must be a list",
}


def _positive_int_field(section: str, key: str) -> bool:
    model = Settings.SECTIONS.get(section)
    field = model.model_fields.get(key) if model is not None else None
    return field is not None and any(getattr(m, "ge", None) == 1 for m in field.metadata)


_BOUNDS: Final = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
                  "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}  # fmt: skip


def _describe(error: Mapping[str, Any], section: str, key: str) -> str:
    """What is wrong, without the input value (a secret could be in it)."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if _positive_int_field(section, key) and (kind.startswith("int_") or kind == "greater_than_equal"):
        return "must be a positive integer"
    if kind in _BOUNDS:
        words, name = _BOUNDS[kind]
        return f"must be {words} {ctx.get(name)}"
    return _MESSAGES.get(kind) or str(error.get("msg", "invalid value"))


def _validation_error(
    err: ValidationError,
    file: Path,
    lines: Mapping[tuple[str, ...], tuple[int, int]],
    origin: Mapping[tuple[str, str], str],
) -> SettingsError:
    messages = []
    for error in err.errors(include_input=False, include_url=False):
        loc = [str(part) for part in error["loc"]]
        section = loc[0] if loc else ""
        named = [part for part in loc[1:3] if not part.isdigit()] if section == "agent" else loc[1:2]
        key = ".".join(named)  # a nested table's key: [agent.admission] → "admission.images"
        what = origin.get((section, key), "file")
        reason = _describe(error, section, key)
        text = f"[{section}] {key}: {reason}" if key else f"[{section}]: {reason}"
        if what.startswith(ENV_PREFIX):
            messages.append(f"environment: error: {what}: {text}")
        elif what == "flags":
            messages.append(f"command line: error: {text}")
        else:
            messages.append(f"{file}:{_at(lines, section, key)}: error: {text}")
    return SettingsError("\n".join(messages))


def _librdkafka_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

"""Settings of every section: ``settings.toml`` (or ``DSFLEET_CONFIG``) < ``DSFLEET_*`` environment < flags.

One model per section. ``[kafka]`` passes librdkafka keys (anything with a dot: ``security.protocol``,
``sasl.mechanism``, ``ssl.ca.location``, …) through unchanged; ``sasl_password_file`` reads the SASL password
from a file so it never sits in the settings file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_DB_URL = "sqlite:///./.dsfleet/state.db"


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
    max_file_bytes: int = Field(16 * 1024 * 1024, ge=1)
    max_depth: int = Field(64, ge=1)
    max_aliases: int = Field(100, ge=1)
    http: str | None = None
    """HOST:PORT of the HTTP API, None: no API."""


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


class KafkaSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    bootstrap_servers: str | None = None
    """HOST:PORT[,HOST:PORT]; None: no broker configured."""
    topic_prefix: str = ""
    partitions: int = Field(12, ge=1)
    replication_factor: int = Field(1, ge=1)
    max_message_bytes: int = Field(1_000_000, ge=1024)
    sasl_password_file: Path | None = None
    fetch_wait_max_ms: int = Field(100, ge=0)


class ApiSettings(_Section):
    token: str | None = None
    token_file: Path | None = None
    read_requires_token: bool = False


class Settings(_Section):
    coordinator: CoordinatorSettings = CoordinatorSettings()
    agent: AgentSettings = AgentSettings()
    kafka: KafkaSettings = KafkaSettings()
    api: ApiSettings = ApiSettings()

"""The store's tables as they are now (SQLAlchemy Core metadata): what the store's queries read and write.

Only the current schema lives here; how a database gets there is the migrations' business
(:mod:`dsfleet.reconciler.store.migrations`), whose revisions spell out their own tables and never import this
module. Changing a table here therefore takes a new revision that makes the same change, and a test upgrades an
empty database to the head revision and compares it with :data:`METADATA` (SQLite and PostgreSQL).
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

METADATA: Final = sa.MetaData()

SCHEMA_VERSION: Final = sa.Table(
    "schema_version",
    METADATA,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
)
"""The release before Alembic's record of its own migrations. Never read by the store's queries: kept because
its highest row (the marker the baseline revision writes) is what makes that release refuse the store."""

REVISIONS: Final = sa.Table(
    "revisions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("git_author", sa.Text),
    sa.Column("git_message", sa.Text),
    sa.Column("manifests_hash", sa.String(64), nullable=False),
    sa.Column("accepted", sa.Boolean, nullable=False),
    sa.Column("errors", sa.JSON, nullable=False),
    sa.Column("nodes_changed", sa.Integer, nullable=False),
    sqlite_autoincrement=True,
)

NODES: Final = sa.Table(
    "nodes",
    METADATA,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("node_id", sa.String(64)),
    sa.Column("hostname", sa.String(255)),
    sa.Column("ip", sa.String(64)),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("capacity", sa.Integer),
    sa.Column("gpus", sa.JSON, nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
    sa.Column("online", sa.Boolean, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
)

INSTANCES: Final = sa.Table(
    "instances",
    METADATA,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("node", sa.String(63), sa.ForeignKey("nodes.name")),
    sa.Column("gpu", sa.Integer, nullable=False),
    sa.Column("image", sa.Text),
    sa.Column("layout", sa.String(32), nullable=False),
    sa.Column("app_type", sa.String(32)),
    sa.Column("profile", sa.String(63)),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("camera_count", sa.Integer, nullable=False),
    sa.Column("spec_hash", sa.String(64)),
    sa.Column("files_hash", sa.String(64)),
    sa.Column("config_hash", sa.String(64)),
)

CAMERAS: Final = sa.Table(
    "cameras",
    METADATA,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("camera_id", sa.String(255), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret_ref", sa.String(63)),
    sa.Column("encoding", sa.String(16)),
    sa.Column("type", sa.String(16)),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("instance", sa.String(63), sa.ForeignKey("instances.name")),
)

NODE_CONFIGS: Final = sa.Table(
    "node_configs",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("node", sa.String(63), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("config_hash", sa.String(64)),
    sa.Column("payload", sa.Text),
    sa.Column("revision_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.UniqueConstraint("node", "generation", name="uq_node_configs_node_generation"),
    sqlite_autoincrement=True,
)

NODE_GENERATIONS: Final = sa.Table(
    "node_generations",
    METADATA,
    sa.Column("node", sa.String(63), primary_key=True),
    sa.Column("generation", sa.Integer, nullable=False),
)
"""The last generation handed out per node; survives the node's deletion, so a node that comes back goes on
counting instead of reusing generations its agent has already seen."""

OUTBOX: Final = sa.Table(
    "outbox",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", sa.LargeBinary),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False),
    # held back (an ordered camera handover waits for the target node): not sent until released; ``hold`` says
    # what the row waits for and why (the handover's moves, deadline, state)
    sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("hold", sa.JSON),
    sa.Index("ix_outbox_pending", "published_at", "id"),
    sqlite_autoincrement=True,
)

OBSERVED: Final = sa.Table(
    "observed",
    METADATA,
    sa.Column("node", sa.String(63), primary_key=True),
    sa.Column("instance", sa.String(63), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("generation", sa.Integer),
    sa.Column("config_hash", sa.String(64)),
    sa.Column("restarts", sa.Integer, nullable=False),
    sa.Column("drift", sa.JSON, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("container_id", sa.String(128)),
    sa.Column("spec_hash", sa.String(64)),
    sa.Column("files_hash", sa.String(64)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("last_log_line", sa.Text),
    sa.Column("fps", sa.JSON),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("conditions", sa.JSON),
    sa.Column("fps_at", sa.DateTime(timezone=True)),
    sa.Column("cameras", sa.JSON),
)
"""What agents report per instance (``conditions``: the agent's problems with it, ``fps_at``: when its FPS were
printed, ``cameras``: per camera of an instance served by DeepStream's stream REST API, ``CameraStatus`` as JSON)."""

EVENTS: Final = sa.Table(
    "events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("node", sa.String(63)),
    sa.Column("instance", sa.String(63)),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_events_kind", "kind"),
    sa.Index("ix_events_at", "at"),
    sqlite_autoincrement=True,
)

NODE_KEYS: Final = sa.Table(
    "node_keys",
    METADATA,
    sa.Column("node", sa.String(63), primary_key=True),
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("public_key", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending (waits for approval), enrolled, revoked
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
    sa.Column("enrolled_at", sa.DateTime(timezone=True)),
    sa.Column("enrolled_by", sa.String(255)),  # "operator" (dsfleet nodes approve) or "token <id>"
    sa.Column("hostname", sa.String(255)),
    sa.Column("machine_id", sa.String(64)),
)

ENROLLMENT_TOKENS: Final = sa.Table(
    "enrollment_tokens",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # SHA-256: the token is never stored
    sa.Column("node", sa.String(63)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("used_by", sa.String(16)),  # the key id it enrolled (a token is used once)
    sqlite_autoincrement=True,
)

WEBHOOK_DELIVERIES: Final = sa.Table(
    "webhook_deliveries",
    METADATA,
    sa.Column("delivery_id", sa.String(128), primary_key=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_webhook_deliveries_received_at", "received_at"),
)

NODE_STATUS: Final = sa.Table(
    "node_status",
    METADATA,
    sa.Column("node", sa.String(63), primary_key=True),
    sa.Column("online", sa.Boolean, nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
    sa.Column("heartbeat_seconds", sa.Float, nullable=False),
    sa.Column("hostname", sa.String(255)),
    sa.Column("machine_id", sa.String(64)),
    sa.Column("addresses", sa.JSON, nullable=False),
    sa.Column("gpus", sa.JSON, nullable=False),
    sa.Column("capacity", sa.Integer),
    sa.Column("agent_version", sa.String(64)),
    sa.Column("docker_version", sa.String(64)),
    sa.Column("nvidia_runtime", sa.Boolean, nullable=False),
    sa.Column("observed_generation", sa.Integer),
    sa.Column("observed_config_hash", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("reported_at", sa.DateTime(timezone=True)),
    sa.Column("fleet", sa.String(64)),
    sa.Column("rejections", sa.JSON),
)
"""What each node's agent announces; kept apart from the ``nodes`` inventory, which only revisions write.
``fleet``: the fleet its agent is bound to; ``rejections``: the AgentConfig records it refused lately."""

SYNC_STATE: Final = sa.Table(
    "sync_state",
    METADATA,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
"""The coordinator's sync state (the pending plan of manual sync)."""

FLEET: Final = sa.Table(
    "fleet",
    METADATA,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
"""The fleet's id (one row, a UUID made with the store): every AgentConfig carries it, so an agent bound to this
fleet ignores another's configs and a coordinator notices records it did not write."""

COORDINATOR: Final = sa.Table(
    "coordinator",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("manifests", sa.Text, nullable=False),
    sa.Column("sync", sa.String(16)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
    sa.Column("interval_seconds", sa.Float, nullable=False),
    sa.Column("broker", sa.String(255)),
    sa.Column("broker_reachable", sa.Boolean),
    sa.Column("broker_since", sa.DateTime(timezone=True)),
    sa.Column("broker_error", sa.Text),
    sa.Column("foreign_configs", sa.Integer, nullable=False),
    sa.Column("last_foreign", sa.Text),
)
"""The coordinator's heartbeat (one row, ``id`` 1): who runs on this store (host, pid, version, what it watches),
when it last wrote (``seen_at``, every ``interval_seconds``; ``stopped_at`` after a clean stop), whether it
reaches its broker and since when, and how many AgentConfig records it saw that it did not write."""

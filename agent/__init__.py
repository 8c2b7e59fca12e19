"""dsfleet agent: converges one GPU host's DeepStream containers to its node config.

This version holds the host-side file writer; the live loop (Kafka, Docker) comes later.

- ``agent.secrets``: the local secret store (files under ``<state-dir>/secrets/`` or ``DSFLEET_SECRET_*`` env).
- ``agent.configfiles`` (pure): fill ``${secret:<ref>}`` placeholders, plan file writes as data.
- ``agent.desiredconfigs`` (pure): parse and check an AgentConfig message or a NodeConfig.
- ``agent.filestore`` (adapter): atomic writes into ``<state-dir>/instances/<name>/``, ``desired.json``.
- ``agent.cli``: ``dsfleet-agent`` (``materialize``).
- ``agent.errors``: ``AgentError`` → ``TemporaryError`` / ``PermanentError``.

May import ``schemas`` and the standard library only (import-linter).
"""
